/**
 * The cost of constrained decoding (`npm run bench:constraints`): the time to compute a grammar
 * mask and apply it to a row of logits, per token, compilation excluded, against the embedded
 * model's CPU decode step, and on a synthetic 65,536-token vocabulary (Jamba's size) against the
 * 6 ms GPU decode target, with the slowest token beside the mean. Targets: ≤ 10% of the CPU step;
 * ≤ 0.3 ms at 65,536 tokens.
 */
import os from 'node:os';
import { loadModel } from '../lib';
import { ConstraintCompiler, ConstraintSpec, TokenConstraint } from '../lib/constraints/grammar';
import { xgrammar } from '../lib/constraints/xgrammar';
import type { JambaTokenizer } from '../lib/tokenizer';

const SCHEMA = {
  kind: 'json_schema', strict: true,
  schema: JSON.stringify({
    type: 'object', additionalProperties: false, required: ['name', 'age', 'lines'],
    properties: { name: { type: 'string', maxLength: 40 }, age: { type: 'integer', minimum: 0, maximum: 200 }, lines: { type: 'array', items: { type: 'string' }, maxItems: 4 } },
  }),
} satisfies ConstraintSpec;
const GRAMMAR: ConstraintSpec = { kind: 'grammar', ebnf: 'root ::= (word " ")* word "."\nword ::= [a-z]+' };

/** xoshiro-free LCG: deterministic choices among allowed tokens. */
function lcg(seed: number) {
  let x = seed >>> 0;
  return () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

interface MaskCost { bitmask: number; apply: number; p99: number }

/**
 * Walks `steps` tokens through the grammar, choosing allowed tokens at random; returns ms per
 * token for the bitmask and for applying it to the logits, and the 99th percentile of their sum
 * (a maximum would show the VM's scheduling and collection pauses).
 */
async function maskCost(start: () => Promise<TokenConstraint>, vocab: number, steps: number): Promise<MaskCost> {
  const rnd = lcg(7);
  let bitmask = 0, apply = 0, n = 0;
  const totals: number[] = [];
  const logits = new Float32Array(vocab);
  while (n < steps) {
    const c = await start();
    try {
      for (let s = 0; s < 64 && n < steps; s++) {
        for (let i = 0; i < vocab; i++) logits[i] = rnd();
        const t0 = performance.now();
        const bits = await c.bitmask();
        const t1 = performance.now();
        await c.mask(logits, bits);
        const t2 = performance.now();
        bitmask += t1 - t0;
        apply += t2 - t1;
        totals.push(t2 - t0);
        n++;
        const allowed: number[] = [];
        for (let i = 0; i < vocab; i++) if (logits[i] !== -Infinity) allowed.push(i);
        const id = allowed[Math.floor(rnd() * allowed.length)];
        if (id === undefined || id === 2) break;  // the end (EOS, id 2 in both vocabularies)
        c.accept(id);
      }
    } finally {
      c.dispose();
    }
  }
  totals.sort((a, b) => a - b);
  return { bitmask: bitmask / n, apply: apply / n, p99: totals[Math.floor(0.99 * (n - 1))]! };
}

const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`;

/** A byte-fallback vocabulary of `size` tokens: specials, the 256 byte tokens, then word pieces. */
function syntheticTokenizer(size: number): JambaTokenizer {
  const strings = ['<unk>', '<s>', '</s>'];
  for (let b = 0; b < 256; b++) strings.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const rnd = lcg(3);
  const chars = 'abcdefghijklmnopqrstuvwxyz{}[]":,0123456789';
  const seen = new Set(strings);
  while (strings.length < size) {
    let t = rnd() < 0.5 ? '▁' : '';
    const len = 1 + Math.floor(rnd() * 8);
    for (let i = 0; i < len; i++) t += chars[Math.floor(rnd() * (i ? 26 : chars.length))];
    if (!seen.has(t)) {
      seen.add(t);
      strings.push(t);
    }
  }
  return { tokenStrings: () => strings, vocabType: 'byte_fallback' } as unknown as JambaTokenizer;
}

async function main() {
  const model = await loadModel();
  const V = model.config.vocabSize;
  // The decode step, plain and under a grammar that allows nearly any text: greedy generation,
  // ms per token, the two alternated five times and the medians kept (the VM's speed drifts).
  const free = 'root ::= [a-zA-Z ,.;:!?\'\\n-]+';
  const perToken = async (grammar?: string) => {
    const t = performance.now();
    const r = await model.complete('ROMEO:\n', { maxTokens: 256, temperature: 0, grammar });
    return (performance.now() - t) / r.tokens.length;
  };
  await perToken();
  await perToken(free);
  const plain: number[] = [], constrained: number[] = [];
  for (let i = 0; i < 5; i++) {
    plain.push(await perToken());
    constrained.push(await perToken(free));
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]!;
  const stepMs = median(plain), constrainedMs = median(constrained);
  const small = new ConstraintCompiler(model.tokenizer, V, [2]);
  await (await small.start(SCHEMA)).dispose();  // compiled once, as the model's cache does
  await (await small.start(GRAMMAR)).dispose();
  const rows: string[] = [];
  const row = (name: string, c: MaskCost, ratio: string, target: string) =>
    rows.push(`| ${name} | ${us(c.bitmask)} | ${us(c.apply)} | ${us(c.bitmask + c.apply)} | ${us(c.p99)} | ${ratio} | ${target} |`);
  for (const [name, spec] of [['JSON schema', SCHEMA], ['grammar', GRAMMAR]] as const) {
    const c = await maskCost(() => small.start(spec), V, 2000);
    row(`${name}, embedded model (${V} tokens)`, c, `${((100 * (c.bitmask + c.apply)) / stepMs).toFixed(1)}% of the CPU decode step (${stepMs.toFixed(3)} ms)`, '≤ 10%');
  }
  const endToEnd = `| generation under a grammar, embedded model, end to end | ${us(constrainedMs)} per token, ${((100 * (constrainedMs - stepMs)) / stepMs).toFixed(1)}% over plain decoding (${us(stepMs)}) |`;
  const BIG = 65_536;
  const tokenizer = syntheticTokenizer(BIG);
  const big = new ConstraintCompiler(tokenizer, BIG, [2]);
  for (const [name, spec] of [['JSON schema', SCHEMA], ['grammar', GRAMMAR]] as const) {
    const t = performance.now();
    await (await big.start(spec)).dispose();
    const compileMs = performance.now() - t;
    const c = await maskCost(() => big.start(spec), BIG, 500);
    row(`${name}, synthetic ${BIG.toLocaleString('en')}-token vocabulary (compiled once, ${compileMs.toFixed(0)} ms)`, c, `${((100 * (c.bitmask + c.apply)) / 6).toFixed(1)}% of the 6 ms GPU decode target`, '≤ 0.3 ms');
  }
  // The same schema compiled by xgrammar as it is, without the bounded-repetition rewrite
  // (lib/constraints/bounded-repetition.ts): the tokens near maxLength are checked at run time.
  const xg = xgrammar();
  const info = await xg.TokenizerInfo.createTokenizerInfo([...tokenizer.tokenStrings()], 'byte_fallback', false, BIG, [2]);
  const asIs = await (await xg.GrammarCompiler.createGrammarCompiler(info)).compileJSONSchema(SCHEMA.schema, false, -1, [',', ':'], true);
  const c = await maskCost(async () => new TokenConstraint(await xg.GrammarMatcher.createGrammarMatcher(asIs), BIG), BIG, 500);
  row(`JSON schema, synthetic vocabulary, xgrammar's grammar without the rewrite`, c, `${((100 * (c.bitmask + c.apply)) / 6).toFixed(1)}% of the 6 ms GPU decode target`, '');
  console.log(`**${os.cpus()[0]?.model ?? 'CPU'}**, Node ${process.version}. Bitmask: xgrammar's next-token bitmask (all a CUDA decode computes on the host; the device applies it). Apply: setting the excluded logits to −∞ on the host. p99: the 99th percentile of a token's bitmask and apply.\n`);
  console.log('| constraint | bitmask | apply | per token | p99 | ratio | target |\n|---|---|---|---|---|---|---|');
  console.log(rows.join('\n'));
  console.log(`\n${endToEnd}`);
  await model.dispose();
}

void main();
