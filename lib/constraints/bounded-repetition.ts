/**
 * A grammar rewrite that keeps xgrammar's token masks precomputed near the end of a bounded
 * repetition.
 *
 * xgrammar precomputes, for every parser state, which tokens are accepted or rejected there;
 * only a token that runs past the end of the state's own rule is "uncertain" and checked at run
 * time, character by character, against the whole parser stack. It expands `E{m,n}` (n ≤ 128)
 * into a chain of rules `r_k ::= "" | E r_k+1` with what follows the repetition left in the
 * parent rule. In the last few iterations of such a chain, every token longer than the
 * iterations left runs out of the chain's rule: a JSON string with `maxLength: 40` makes some
 * 48,000 of a 65,536-token vocabulary uncertain at 7 characters from the limit, and the mask
 * takes 38 ms instead of 0.05 (measured with xgrammar 0.1.27's WebAssembly build).
 *
 * The rewrite moves the continuation into the chain: `P E{m,n} Q` becomes `P c_0` with
 * `c_k ::= E c_k+1` below m, `c_k ::= t | E c_k+1` from m to n − 1, `c_n ::= t`, and
 * `t ::= Q`. The language is the same; a token that overruns the repetition now meets Q inside
 * the chain's own rules, so it is decided when the grammar is compiled. Only repetitions with
 * something after them in their sequence are rewritten; above xgrammar's unrolling threshold
 * (128), its own repeat construct stays. A grammar this parser does not understand (xgrammar's
 * macros, say) is returned unchanged: the rewrite changes speed, never meaning.
 */

/** xgrammar unrolls `{m,n}` into a chain of rules up to this bound, and uses a repeat node above. */
const UNROLL_LIMIT = 128;

type Token =
  | { kind: 'atom'; text: string }  // a string literal, a character class
  | { kind: 'ident'; text: string }
  | { kind: 'define' | '(' | '(=' | ')' | '|' | '*' | '+' | '?' }
  | { kind: 'range'; min: number; max: number };  // {m}, {m,}, {m,n}; max −1: unbounded

type Atom =
  | { kind: 'text'; text: string }  // a literal, a class, a rule reference
  | { kind: 'group'; body: Choices };
interface Element { atom: Atom; quantifier: string; range?: { min: number; max: number } }
type Sequence = Element[];
type Choices = Sequence[];
interface Rule { name: string; body: Choices; lookahead?: Choices }

class Unsupported extends Error {}

/** Splits xgrammar EBNF into tokens; throws Unsupported on anything else. */
function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const quoted = (close: string) => {
    const start = i++;
    while (i < src.length && src[i] !== close) i += src[i] === '\\' ? 2 : 1;
    if (i >= src.length) throw new Unsupported();
    out.push({ kind: 'atom', text: src.slice(start, ++i) });
  };
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) i++;
    else if (c === '#') while (i < src.length && src[i] !== '\n') i++;
    else if (c === '"') quoted('"');
    else if (c === '[') quoted(']');
    else if (src.startsWith('::=', i)) { out.push({ kind: 'define' }); i += 3; }
    else if (c === '(') {
      let j = i + 1;
      while (j < src.length && /\s/.test(src[j]!)) j++;
      if (src[j] === '=') { out.push({ kind: '(=' }); i = j + 1; } else { out.push({ kind: '(' }); i++; }
    } else if (c === ')' || c === '|' || c === '*' || c === '+' || c === '?') { out.push({ kind: c }); i++; }
    else if (c === '{') {
      const m = /^\{\s*(\d+)\s*(,\s*(\d*)\s*)?\}/.exec(src.slice(i));
      if (!m) throw new Unsupported();
      const min = Number(m[1]);
      out.push({ kind: 'range', min, max: m[2] === undefined ? min : m[3] ? Number(m[3]) : -1 });
      i += m[0].length;
    } else {
      const m = /^[A-Za-z_][A-Za-z0-9_.-]*/.exec(src.slice(i));
      if (!m) throw new Unsupported();
      out.push({ kind: 'ident', text: m[0] });
      i += m[0].length;
    }
  }
  return out;
}

/** Parses tokens into rules: `name ::= choices (= choices)?`, a rule ending where the next begins. */
function parse(tokens: Token[]): Rule[] {
  let at = 0;
  const peek = (d = 0) => tokens[at + d];
  const ruleStarts = () => peek()?.kind === 'ident' && peek(1)?.kind === 'define';
  const expect = (kind: Token['kind']) => {
    if (peek()?.kind !== kind) throw new Unsupported();
    at++;
  };
  const choices = (): Choices => {
    const out: Choices = [sequence()];
    while (peek()?.kind === '|') {
      at++;
      out.push(sequence());
    }
    return out;
  };
  const sequence = (): Sequence => {
    const out: Sequence = [];
    for (;;) {
      const t = peek();
      if (!t || t.kind === '|' || t.kind === ')' || t.kind === '(=' || ruleStarts()) return out;
      let atom: Atom;
      if (t.kind === 'atom' || t.kind === 'ident') { atom = { kind: 'text', text: t.text }; at++; }
      else if (t.kind === '(') { at++; atom = { kind: 'group', body: choices() }; expect(')'); }
      else throw new Unsupported();
      const q = peek();
      if (q?.kind === '*' || q?.kind === '+' || q?.kind === '?') { at++; out.push({ atom, quantifier: q.kind }); }
      else if (q?.kind === 'range') { at++; out.push({ atom, quantifier: '', range: { min: q.min, max: q.max } }); }
      else out.push({ atom, quantifier: '' });
    }
  };
  const rules: Rule[] = [];
  while (at < tokens.length) {
    if (!ruleStarts()) throw new Unsupported();
    const name = (peek() as { text: string }).text;
    at += 2;
    const rule: Rule = { name, body: choices() };
    if (peek()?.kind === '(=') { at++; rule.lookahead = choices(); expect(')'); }
    rules.push(rule);
  }
  return rules;
}

const printChoices = (c: Choices): string => c.map(printSequence).join(' | ');
const printSequence = (s: Sequence): string => (s.length ? s.map(printElement).join(' ') : '""');
function printElement(e: Element): string {
  const atom = e.atom.kind === 'text' ? e.atom.text : `(${printChoices(e.atom.body)})`;
  if (!e.range) return atom + e.quantifier;
  const { min, max } = e.range;
  return `${atom}{${min}${max === min ? '' : `,${max < 0 ? '' : max}`}}`;
}
const printRule = (r: Rule) => `${r.name} ::= ${printChoices(r.body)}${r.lookahead ? ` (= ${printChoices(r.lookahead)})` : ''}`;

/** The rewrite of every rule; new rules are appended and rewritten in turn. */
function rewrite(rules: Rule[]): number {
  const names = new Set(rules.map((r) => r.name));
  const fresh = (base: string) => {
    let n = 1, name = `${base}_bounded_${n}`;
    while (names.has(name)) name = `${base}_bounded_${++n}`;
    names.add(name);
    return name;
  };
  const ref = (name: string): Element => ({ atom: { kind: 'text', text: name }, quantifier: '' });
  let count = 0;
  const inSequence = (s: Sequence, owner: string): Sequence => {
    const out: Sequence = [];
    for (let i = 0; i < s.length; i++) {
      const e = s[i]!;
      const atom: Atom = e.atom.kind === 'group' ? { kind: 'group', body: e.atom.body.map((x) => inSequence(x, owner)) } : e.atom;
      const r = e.range;
      if (!r || r.max < 0 || r.max > UNROLL_LIMIT || r.max < 1 || i === s.length - 1) {
        out.push({ ...e, atom });
        continue;
      }
      // P E{m,n} Q → P c_0: the rest of the sequence becomes rule t, reached from inside the chain.
      count++;
      const rest = s.slice(i + 1);
      const tail = rest.length === 1 && rest[0]!.atom.kind === 'text' && !rest[0]!.quantifier && !rest[0]!.range ? rest[0]! : ref(fresh(owner));
      if (tail !== rest[0]) rules.push({ name: (tail.atom as { text: string }).text, body: [rest] });
      const item: Element = { atom, quantifier: '' };
      const chain = Array.from({ length: r.max + 1 }, () => fresh(owner));
      chain.forEach((name, k) => {
        const body: Choices = [];
        if (k >= r.min) body.push([tail]);
        if (k < r.max) body.push([item, ref(chain[k + 1]!)]);
        rules.push({ name, body });
      });
      out.push(ref(chain[0]!));
      return out;
    }
    return out;
  };
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i]!;
    r.body = r.body.map((s) => inSequence(s, r.name));
  }
  return count;
}

/** `ebnf` with each bounded repetition followed by more of its sequence rewritten as described above. */
export function rewriteBoundedRepetitions(ebnf: string): string {
  let rules: Rule[];
  try {
    rules = parse(tokenize(ebnf));
  } catch (e) {
    if (e instanceof Unsupported) return ebnf;
    throw e;
  }
  return rewrite(rules) ? rules.map(printRule).join('\n') + '\n' : ebnf;
}
