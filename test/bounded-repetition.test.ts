/**
 * The bounded-repetition rewrite (lib/constraints/bounded-repetition.ts) changes how xgrammar
 * computes masks, never which tokens they allow: along seeded random walks over the embedded
 * model's vocabulary, the rewritten grammar's mask equals the original's at every step, for
 * grammars with repetitions of characters, groups and rules, exact counts, minimums, repetitions
 * inside groups and before a lookahead, and a JSON schema's grammar.
 */
import { rewriteBoundedRepetitions } from '../lib/constraints/bounded-repetition';
import { xgrammar } from '../lib/constraints/xgrammar';
import { JambaTokenizer } from '../lib/tokenizer';
import type * as Xgrammar from '@mlc-ai/web-xgrammar';
import { EMBEDDED } from './helpers/paths';

const EOS = 2;
let compiler: Xgrammar.GrammarCompiler;
beforeAll(async () => {
  const tok = JambaTokenizer.fromDir(EMBEDDED);
  const strings = tok.tokenStrings();
  const info = await xgrammar().TokenizerInfo.createTokenizerInfo([...strings], tok.vocabType, false, strings.length, [EOS]);
  compiler = await xgrammar().GrammarCompiler.createGrammarCompiler(info);
});

function lcg(seed: number) {
  let x = seed >>> 0;
  return () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** Walks both grammars with the same random tokens, comparing their masks at every step; returns the steps taken. */
async function compareWalks(original: string, rewritten: string, walks: number): Promise<number> {
  const [a, b] = await Promise.all([compiler.compileGrammar(original, 'root'), compiler.compileGrammar(rewritten, 'root')]);
  const rnd = lcg(walks);
  let steps = 0;
  try {
    for (let w = 0; w < walks; w++) {
      const ma = await xgrammar().GrammarMatcher.createGrammarMatcher(a);
      const mb = await xgrammar().GrammarMatcher.createGrammarMatcher(b);
      try {
        for (let s = 0; s < 64; s++, steps++) {
          const [ka, kb] = [await ma.getNextTokenBitmask(), await mb.getNextTokenBitmask()];
          expect(Array.from(kb)).toEqual(Array.from(ka));
          const allowed: number[] = [];
          ka.forEach((word, i) => { for (let bit = 0; bit < 32; bit++) if ((word >>> bit) & 1) allowed.push(i * 32 + bit); });
          if (!allowed.length) break;
          const id = allowed[Math.floor(rnd() * allowed.length)]!;
          expect([ma.acceptToken(id), mb.acceptToken(id)]).toEqual([true, true]);
          if (id === EOS) break;
        }
      } finally {
        ma.dispose();
        mb.dispose();
      }
    }
  } finally {
    a.dispose();
    b.dispose();
  }
  return steps;
}

const grammars: Record<string, string> = {
  'a string of at most 12 characters': String.raw`root ::= "\"" [^"\\\r\n]{0,12} "\""`,
  'a list of 1 to 4 items, each of 1 to 5 letters': 'root ::= "[" item ("," item){0,3} "]"\nitem ::= [a-z]{1,5}',
  'groups repeated 2 to 5 times, then an exact count': 'root ::= ("ab" | "c" | word){2,5} "." [0-9]{3} "!"\nword ::= [a-z]+ " "',
  'a repetition inside a repeated group': 'root ::= ("<" [a-z]{0,3} ">")+ "."',
  'a rule with a lookahead after its repetition': 'root ::= x ";" x ";"\nx ::= [a-z]{2,6} "=" [0-9] (= ";")',
  'two repetitions in one sequence': 'root ::= [a-z]{1,4} "-" [0-9]{0,3} "."',
};

describe('the bounded-repetition rewrite', () => {
  test.each(Object.keys(grammars))('%s: rewritten, with the same mask at every step', async (name) => {
    const original = grammars[name]!;
    const rewritten = rewriteBoundedRepetitions(original);
    expect(rewritten).not.toBe(original);
    expect(await compareWalks(original, rewritten, 24)).toBeGreaterThan(24 * 3);
  });

  test("a JSON schema's grammar (maxLength, minLength, maxItems, bounded integers): the same masks", async () => {
    const schema = {
      type: 'object', additionalProperties: false, required: ['name', 'tags', 'age'],
      properties: {
        name: { type: 'string', minLength: 2, maxLength: 10 },
        tags: { type: 'array', maxItems: 3, items: { type: 'string', maxLength: 4 } },
        age: { type: 'integer', minimum: 0, maximum: 120 },
      },
    };
    const original = await xgrammar().Testings._jsonSchemaToEBNF(JSON.stringify(schema), false, -1, [',', ':'], true);
    const rewritten = rewriteBoundedRepetitions(original);
    expect(rewritten).not.toBe(original);
    expect(await compareWalks(original, rewritten, 24)).toBeGreaterThan(24 * 6);
  });

  test('grammars without a bounded repetition before more of a sequence, or beyond this parser, come back unchanged', () => {
    for (const g of [
      'root ::= [a-z]{0,8}',  // nothing after the repetition in its sequence
      'root ::= "a"{0,200} "b"',  // above xgrammar's unrolling threshold: its repeat node stays
      'root ::= [a-z]* "."',
      "root ::= 'single quotes are not xgrammar EBNF'",
      'root ::= TagDispatch(("<a>", x), stop_eos=true)\nx ::= [a-z]{0,3} "</a>"',
    ]) expect(rewriteBoundedRepetitions(g)).toBe(g);
  });

  test('comments, escapes and brackets inside literals and classes survive the rewrite', async () => {
    const original = String.raw`# a comment with ::= and "quotes"
root ::= "(\"" [\]a-c\\]{1,3} "|)" # trailing
`;
    const rewritten = rewriteBoundedRepetitions(original);
    expect(rewritten).not.toBe(original);
    expect(await compareWalks(original, rewritten, 16)).toBeGreaterThan(16 * 2);
  });
});
