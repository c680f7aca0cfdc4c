/**
 * The cost of constrained decoding (`npm run bench:constraints`): the time to compute a grammar
 * mask and apply it to a row of logits, per token, compilation excluded, against the embedded
 * model's CPU decode step, and on a synthetic 65,536-token vocabulary (Jamba's size) against the
 * 6 ms GPU decode target. Targets: ≤ 10% of the CPU step; ≤ 0.3 ms at 65,536 tokens.
 */
import os from 'node:os';
import { loadModel } from '../lib';
import { ConstraintCompiler, ConstraintSpec } from '../lib/constraints/grammar';
import type { JambaTokenizer } from '../lib/tokenizer';

const SCHEMA: ConstraintSpec = {
  kind: 'json_schema', strict: true,
  schema: JSON.stringify({
    type: 'object', additionalProperties: false, required: ['name', 'age', 'lines'],
    properties: { name: { type: 'string', maxLength: 40 }, age: { type: 'integer', minimum: 0, maximum: 200 }, lines: { type: 'array', items: { type: 'string' }, maxItems: 4 } },
  }),
};
const GRAMMAR: ConstraintSpec = { kind: 'grammar', ebnf: 'root ::= (word " ")* word "."\nword ::= [a-z]+' };

/** xoshiro-free LCG: deterministic choices among allowed tokens. */
function lcg(seed: number) {
  let x = seed >>> 0;
  return () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** Walks `steps` tokens through the grammar, choosing allowed tokens at random; returns ms per mask. */
async function maskCost(compiler: ConstraintCompiler, spec: ConstraintSpec, vocab: number, steps: number): Promise<number> {
  const rnd = lcg(7);
  let total = 0, n = 0;
  while (n < steps) {
    const c = await compiler.start(spec);
    try {
      for (let s = 0; s < 64 && n < steps; s++) {
        const logits = new Float32Array(vocab);
        for (let i = 0; i < vocab; i++) logits[i] = rnd();
        const t = performance.now();
        await c.mask(logits);
        total += performance.now() - t;
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
  return total / n;
}

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
  // The decode step: greedy generation, ms per token.
  await model.complete('ROMEO:\n', { maxTokens: 32, temperature: 0 });
  const t0 = performance.now();
  const r = await model.complete('ROMEO:\n', { maxTokens: 256, temperature: 0 });
  const stepMs = (performance.now() - t0) / r.tokens.length;
  const small = new ConstraintCompiler(model.tokenizer, V, [2]);
  await (await small.start(SCHEMA)).dispose();  // compiled once, as the model's cache does
  await (await small.start(GRAMMAR)).dispose();
  const rows: string[] = [];
  for (const [name, spec] of [['JSON schema', SCHEMA], ['grammar', GRAMMAR]] as const) {
    const ms = await maskCost(small, spec, V, 2000);
    rows.push(`| ${name}, embedded model (${V} tokens) | ${(ms * 1000).toFixed(1)} µs | ${((100 * ms) / stepMs).toFixed(1)}% of the CPU decode step (${stepMs.toFixed(3)} ms) | ≤ 10% |`);
  }
  // End to end: the same model generating under a grammar that allows nearly any text, whose mask
  // is computed while each pass runs.
  const free = 'root ::= [a-zA-Z ,.;:!?\'\\n-]+';
  await model.complete('ROMEO:\n', { maxTokens: 32, temperature: 0, grammar: free });
  const g0 = performance.now();
  const g = await model.complete('ROMEO:\n', { maxTokens: 256, temperature: 0, grammar: free });
  const constrainedMs = (performance.now() - g0) / g.tokens.length;
  rows.push(`| generation under a grammar, embedded model, end to end | ${(constrainedMs * 1000).toFixed(0)} µs per token | ${((100 * (constrainedMs - stepMs)) / stepMs).toFixed(1)}% over plain decoding (${(stepMs * 1000).toFixed(0)} µs) | |`);
  const BIG = 65_536;
  const big = new ConstraintCompiler(syntheticTokenizer(BIG), BIG, [2]);
  let t = performance.now();
  await (await big.start(SCHEMA)).dispose();
  const compileMs = performance.now() - t;
  t = performance.now();
  await (await big.start(GRAMMAR)).dispose();
  const compileGrammarMs = performance.now() - t;
  for (const [name, spec, c] of [['JSON schema', SCHEMA, compileMs], ['grammar', GRAMMAR, compileGrammarMs]] as const) {
    const ms = await maskCost(big, spec, BIG, 500);
    rows.push(`| ${name}, synthetic ${BIG.toLocaleString('en')}-token vocabulary (compiled in ${c.toFixed(0)} ms, once) | ${(ms * 1000).toFixed(1)} µs | ${((100 * ms) / 6).toFixed(1)}% of the 6 ms GPU decode target | ≤ 0.3 ms |`);
  }
  console.log(`**${os.cpus()[0]?.model ?? 'CPU'}**, Node ${process.version}; mask = xgrammar's next-token bitmask plus setting the excluded logits to −∞\n`);
  console.log('| constraint | mask per token | ratio | target |\n|---|---|---|---|');
  console.log(rows.join('\n'));
  await model.dispose();
}

void main();
