/**
 * Constrained decoding: output forced to a JSON schema, to any JSON object, or to a grammar, by
 * masking before every sampling step the tokens the grammar cannot accept next (greedy and
 * sampled alike). The engine is xgrammar: a pushdown automaton over the tokenizer's vocabulary,
 * with token masks precomputed per grammar state, so a step's mask costs microseconds.
 *
 * - JSON is compact (no whitespace between tokens, `,` and `:` as separators): free whitespace
 *   would let a model pad forever.
 * - Grammars are xgrammar's EBNF, the GBNF dialect of llama.cpp (`root ::= "yes" | "no"`,
 *   character classes, `*`, `+`, `?`, `{m,n}`), rooted at `root`.
 * - Compiled grammars are cached per model by their spec (compilation takes milliseconds to
 *   seconds; a mask, microseconds). Each generation has its own matcher; a grammar ends by
 *   allowing only the end-of-sequence tokens.
 */
import { InvalidArgumentError } from '../errors';
import type { JambaTokenizer } from '../tokenizer';
import type * as Xgrammar from '@mlc-ai/web-xgrammar';
import { rewriteBoundedRepetitions } from './bounded-repetition';
import { XgrammarModule, xgrammar } from './xgrammar';

/** OpenAI's `response_format`. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name?: string; description?: string; schema?: Record<string, unknown> | boolean; strict?: boolean | null } };

/** What a generation is constrained to, checked. */
export type ConstraintSpec =
  | { kind: 'json_schema'; schema: string; strict: boolean }
  | { kind: 'grammar'; ebnf: string }
  /** An xgrammar structural tag (JSON): the tool-call format of tools.ts. */
  | { kind: 'structural_tag'; tag: string };

const CACHE_ENTRIES = 64;

/** The constraint `responseFormat` and `grammar` ask for (null: none), each field checked by name. */
export function resolveConstraint(responseFormat: unknown, grammar: unknown): ConstraintSpec | null {
  if (grammar !== undefined && grammar !== null) {
    if (typeof grammar !== 'string' || !grammar.trim()) throw new InvalidArgumentError('grammar must be a non-empty string (xgrammar EBNF / GBNF, rooted at "root")');
    if (responseFormat !== undefined && (responseFormat as { type?: unknown } | null)?.type !== 'text')
      throw new InvalidArgumentError('grammar and responseFormat cannot both constrain one generation');
    return { kind: 'grammar', ebnf: grammar };
  }
  if (responseFormat === undefined || responseFormat === null) return null;
  const rf = responseFormat as { type?: unknown; json_schema?: unknown };
  if (typeof rf !== 'object' || Array.isArray(rf)) throw new InvalidArgumentError('responseFormat must be an object with a type');
  if (rf.type === 'text') return null;
  if (rf.type === 'json_object') return { kind: 'json_schema', schema: '{"type":"object"}', strict: false };
  if (rf.type !== 'json_schema') throw new InvalidArgumentError(`responseFormat.type must be 'text', 'json_object' or 'json_schema', got ${JSON.stringify(rf.type)}`);
  const js = rf.json_schema as { schema?: unknown; strict?: unknown } | undefined;
  if (js === null || typeof js !== 'object' || Array.isArray(js)) throw new InvalidArgumentError('responseFormat.json_schema must be an object with a schema');
  if (js.strict !== undefined && js.strict !== null && typeof js.strict !== 'boolean') throw new InvalidArgumentError('responseFormat.json_schema.strict must be a boolean');
  const schema = js.schema ?? {};
  if (typeof schema !== 'boolean' && (typeof schema !== 'object' || schema === null || Array.isArray(schema)))
    throw new InvalidArgumentError('responseFormat.json_schema.schema must be a JSON schema object');
  return { kind: 'json_schema', schema: JSON.stringify(schema), strict: js.strict === true };
}

type Compiled = InstanceType<XgrammarModule['CompiledGrammar']>;
type Matcher = Xgrammar.GrammarMatcher;

/** One generation's grammar state. */
export class TokenConstraint {
  /** The tokens accepted so far (a fresh matcher fed these reaches the same state). */
  readonly accepted: number[] = [];

  constructor(private readonly matcher: Matcher, private readonly vocab: number) {}

  /** The tokens the grammar can take next: bit i of word i / 32 (for a mask applied on the device). */
  bitmask(): Promise<Int32Array> {
    return this.matcher.getNextTokenBitmask();
  }

  /** Sets the logits of every token `bits` (default: the grammar's next mask) forbids to −∞, in place. */
  async mask(logits: Float32Array, bits?: Int32Array): Promise<void> {
    bits ??= await this.bitmask();
    // Runs of fully forbidden words are filled at once; otherwise only the forbidden tokens are
    // visited, the set bits of each inverted word, lowest first.
    const words = Math.ceil(this.vocab / 32);
    for (let w = 0, at = 0; w < words; w++, at += 32) {
      if (bits[w] === 0) {
        let end = w + 1;
        while (end < words && bits[end] === 0) end++;
        logits.fill(-Infinity, at, Math.min(end * 32, this.vocab));
        at += (end - 1 - w) * 32;
        w = end - 1;
        continue;
      }
      let off = ~bits[w]!;
      if (at + 32 > this.vocab) off &= (1 << (this.vocab - at)) - 1;
      while (off !== 0) {
        logits[at + 31 - Math.clz32(off & -off)] = -Infinity;
        off &= off - 1;
      }
    }
  }

  /** Advances past `id`, which the last mask allowed. */
  accept(id: number): void {
    if (!this.matcher.acceptToken(id)) throw new InvalidArgumentError(`token ${id} is not allowed by the grammar here`);
    this.accepted.push(id);
  }

  dispose(): void {
    this.matcher.dispose();
  }
}

/** The EBNF of compact JSON valid under `schema` (a JSON string), with separators `[comma, colon]`. */
async function jsonSchemaEbnf(schema: string, separators: [string, string], strict: boolean): Promise<string> {
  // indent -1: none (xgrammar's stand-in for C++'s empty optional).
  return rewriteBoundedRepetitions(await xgrammar().Testings._jsonSchemaToEBNF(schema, false, -1, separators, strict));
}

/**
 * A structural tag with each `json_schema` part turned into the grammar of that schema's JSON
 * without free whitespace (separators ', ' and ': ', as the chat template's tojson writes
 * arguments): xgrammar's structural tags otherwise allow any whitespace, which a model can pad
 * with forever.
 */
async function compactJsonIn(node: unknown): Promise<unknown> {
  if (Array.isArray(node)) return Promise.all(node.map(compactJsonIn));
  if (node === null || typeof node !== 'object') return node;
  const o = node as Record<string, unknown>;
  if (o.type === 'json_schema')
    return { type: 'grammar', grammar: await jsonSchemaEbnf(JSON.stringify(o.json_schema), [', ', ': '], true) };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) out[k] = await compactJsonIn(v);
  return out;
}

/** Compiles constraints for one model's tokenizer, caching them by spec. */
export class ConstraintCompiler {
  private compiler: Promise<Xgrammar.GrammarCompiler> | undefined;
  private readonly cache = new Map<string, Promise<Compiled>>();

  constructor(private readonly tokenizer: JambaTokenizer, private readonly vocab: number, private readonly stopIds: number[]) {}

  private getCompiler() {
    this.compiler ??= (async () => {
      const xg = xgrammar();
      const info = await xg.TokenizerInfo.createTokenizerInfo([...this.tokenizer.tokenStrings()], this.tokenizer.vocabType, false, this.vocab, this.stopIds);
      return xg.GrammarCompiler.createGrammarCompiler(info);
    })();
    return this.compiler;
  }

  private compiled(spec: ConstraintSpec): Promise<Compiled> {
    const key = JSON.stringify(spec);
    let c = this.cache.get(key);
    if (c) {
      this.cache.delete(key);  // most recently used last
      this.cache.set(key, c);
      return c;
    }
    c = (async () => {
      const compiler = await this.getCompiler();
      try {
        if (spec.kind === 'structural_tag') return await compiler.compileStructuralTag((await compactJsonIn(JSON.parse(spec.tag))) as Record<string, unknown>);
        if (spec.kind === 'json_schema') return await compiler.compileGrammar(await jsonSchemaEbnf(spec.schema, [',', ':'], spec.strict), 'root');
        try {
          return await compiler.compileGrammar(rewriteBoundedRepetitions(spec.ebnf), 'root');
        } catch {
          // The user's own text, for an error message that points into it.
          return await compiler.compileGrammar(spec.ebnf, 'root');
        }
      } catch (e) {
        const what = spec.kind === 'grammar' ? 'grammar' : spec.kind === 'structural_tag' ? 'tools (their parameters)' : 'responseFormat.json_schema.schema';
        throw new InvalidArgumentError(`${what} cannot be compiled: ${e instanceof Error ? e.message : String(e)}`);
      }
    })();
    c.catch(() => this.cache.delete(key));
    this.cache.set(key, c);
    if (this.cache.size > CACHE_ENTRIES) {
      const [oldKey, old] = this.cache.entries().next().value as [string, Promise<Compiled>];
      this.cache.delete(oldKey);
      old.then((g) => g.dispose(), () => undefined);
    }
    return c;
  }

  /** A matcher at the start of the constrained output. */
  async start(spec: ConstraintSpec): Promise<TokenConstraint> {
    const g = await this.compiled(spec);
    return new TokenConstraint(await xgrammar().GrammarMatcher.createGrammarMatcher(g), this.vocab);
  }
}
