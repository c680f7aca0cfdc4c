/**
 * The native float32 backward (model.forwardForGrad / valueAndGrad) against the float64 reference
 * backward (helpers/reference-backward.ts, itself held to finite differences in
 * grad-reference.test.ts): gradients with respect to soft-prompt rows, token rows and initial
 * states (conv, SSM, K/V prefix) within relative L2 1e-4, on the fixtures, ExpertsInt8 and random
 * configurations, from 1 to 1,100 rows. The reference follows the engine's routing, so a
 * near-tie between experts (logged) cannot make the two differ. Then the guarantees: an example
 * batched equals it alone, and 1 thread equals 2, bit for bit; bad input is refused by name.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AbortError, GradExample, InvalidArgumentError, JambaModel, loadModel } from '../lib';
import { BOS, GradInputs, gradInputs, referenceInputs, routingOf } from './helpers/grad-example';
import { EMBEDDED, TINY_RANDOM } from './helpers/paths';
import { BASE, CASES } from './helpers/random-configs';
import { writeRandomCheckpoint } from './helpers/random-checkpoint';
import { referenceGrad, routerMargin } from './helpers/reference-backward';
import { Weights, expertsInt8Weights, loadWeights } from './helpers/reference-model';
import { concatF64, relErr } from './helpers/reference-ops';
import { rng } from './helpers/rng';

interface Case {
  label: string;
  dir: string;
  expertsInt8?: boolean;
  /** Rows of the example: BOS, a soft prompt, then tokens. */
  soft: number;
  tokens: number;
  /** Tokens evaluated before, whose state the example starts from (0: zero state). */
  prefix: number;
}

/** The reference's weights for a model folder (ExpertsInt8 applied as the engine applies it). */
function referenceWeights(dir: string, int8: boolean): { cfg: ReturnType<typeof loadWeights>['cfg']; w: Weights } {
  const { cfg, w } = loadWeights(dir);
  if (!int8) return { cfg, w };
  return { cfg, w: expertsInt8Weights(w, (name) => (/down_proj/.test(name) ? cfg.intermediateSize : cfg.hiddenSize)) };
}

async function example(model: JambaModel, c: Case, seed: number): Promise<{ ex: GradExample; inputs: GradInputs }> {
  const r = rng(seed);
  const V = model.config.vocabSize;
  const inputs = await gradInputs(model, c, r);
  const { soft, ids, snap } = inputs;
  const segments = [{ ids: [BOS] }, ...(c.soft ? [{ embeds: soft }] : []), { ids }];
  const rows = 1 + c.soft + c.tokens;
  // Explicit, weighted targets: every row predicts a random token.
  const targets = { rows: Array.from({ length: rows }, (_, i) => i), ids: Array.from({ length: rows }, () => Math.floor(r() * V)),
    weights: Array.from({ length: rows }, () => 0.25 + r()) };
  const ex: GradExample = { segments, targets };
  if (snap) ex.initialState = snap;
  return { ex, inputs };
}

const f64 = (a: Float32Array) => Float64Array.from(a);

async function check(c: Case, seed: number): Promise<void> {
  const model = await loadModel(c.dir, { expertsInt8: c.expertsInt8 ?? false });
  try {
    const { cfg, w } = referenceWeights(c.dir, c.expertsInt8 ?? false);
    const H = cfg.hiddenSize;
    const { ex, inputs } = await example(model, c, seed);
    const tape = await model.forwardForGrad([ex], { reduction: 'sum', outputs: ['routing'] });
    const res = await tape.backward({}, { initialState: true, segments: 'all' });

    // The reference on the same rows, from the same state, with the engine's routing.
    const { rows, count, initial } = referenceInputs(w.get('model.embed_tokens.weight')!, H, inputs);
    const routing = routingOf(tape.routing!, cfg.numExpertsPerTok);
    const targets = ex.targets as { rows: number[]; ids: number[]; weights: number[] };
    const ref = referenceGrad(cfg, w, rows, { initial, routing, targets, denom: 1 });

    const got = concatF64(res.segments[0]!.map((g) => g!));
    const errs: Array<[string, number]> = [['loss', Math.abs(tape.loss - ref.loss) / Math.abs(ref.loss)], ['input rows', relErr(got, ref.dRows)]];
    if (initial) {
      for (const key of ['conv', 'ssm', 'k', 'v'] as const) {
        const a = res.initialState![0]!.map((l) => l[key]), b = ref.dInitial.map((l) => l[key] ?? new Float64Array(0));
        if (b.some((x) => x.length)) errs.push([`initial ${key}`, relErr(concatF64(a), concatF64(b))]);
      }
    }
    const margin = routerMargin(ref.tape, cfg.numExperts, cfg.numExpertsPerTok);
    console.log(`${c.label}: ${count} rows, loss ${tape.loss.toFixed(4)}; ${errs.map(([k, e]) => `${k} ${e.toExponential(1)}`).join(', ')}; router margin ${margin.toExponential(1)}`);
    for (const [k, e] of errs) expect([c.label, k, e <= (k === 'loss' ? 1e-5 : 1e-4)]).toEqual([c.label, k, true]);
  } finally {
    await model.dispose();
  }
}

test('the fixtures: soft prompt, token rows and initial states, against the float64 reference', async () => {
  await check({ label: 'tiny-random, zero state', dir: TINY_RANDOM, soft: 3, tokens: 20, prefix: 0 }, 1);
  await check({ label: 'tiny-random, from a 9-token state', dir: TINY_RANDOM, soft: 2, tokens: 70, prefix: 9 }, 2);
  await check({ label: 'tiny-random, ExpertsInt8', dir: TINY_RANDOM, expertsInt8: true, soft: 2, tokens: 30, prefix: 5 }, 3);
  await check({ label: 'embedded model, from a state', dir: EMBEDDED, soft: 4, tokens: 40, prefix: 6 }, 4);
  await check({ label: 'embedded model, one row', dir: EMBEDDED, soft: 0, tokens: 0, prefix: 3 }, 5);
});

test('random configurations: GQA/MQA/MHA, top-1/2/3, tied heads, f32/f16/bf16 files, and 1,100 rows', async () => {
  for (const [i, [label, config, dtype, shards]] of CASES.entries()) {
    const dir = writeRandomCheckpoint({ ...BASE, ...config }, { dtype, shards, seed: 200 + i });
    await check({ label, dir, soft: 2, tokens: i === 0 ? 1100 : 40, prefix: i === 1 ? 0 : 7 }, 20 + i);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** The gradients of `examples` as raw bytes, for bitwise comparison. */
async function gradBytes(model: JambaModel, examples: GradExample[]): Promise<Buffer[]> {
  const tape = await model.forwardForGrad(examples, { reduction: 'sum' });
  const res = await tape.backward({}, { initialState: true, segments: 'all' });
  return res.segments.map((seg, i) => Buffer.concat([
    ...seg.map((g) => Buffer.from(g!.buffer, g!.byteOffset, g!.byteLength)),
    ...res.initialState![i]!.flatMap((l) => [l.conv, l.ssm, l.k, l.v].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))),
    Buffer.from(new Float64Array([tape.exampleLoss[i]!]).buffer),
  ]));
}

test('an example batched with others equals it alone, one thread equals two, and kept activations equal recomputed ones, bit for bit', async () => {
  const model = await loadModel(TINY_RANDOM);
  try {
    const cases: Case[] = [
      { label: 'a', dir: TINY_RANDOM, soft: 2, tokens: 75, prefix: 4 },
      { label: 'b', dir: TINY_RANDOM, soft: 0, tokens: 5, prefix: 0 },
      { label: 'c', dir: TINY_RANDOM, soft: 3, tokens: 33, prefix: 12 },
    ];
    const exs = await Promise.all(cases.map((c, i) => example(model, c, 40 + i).then((e) => e.ex)));
    const batched = await gradBytes(model, exs);
    for (const [i, ex] of exs.entries()) expect((await gradBytes(model, [ex]))[0]!.equals(batched[i]!)).toBe(true);
    // Keeping every layer's intermediates instead of recomputing them changes no bit.
    const kept = await model.forwardForGrad(exs, { reduction: 'sum', checkpointing: 'none' });
    const keptGrads = await kept.backward({}, { initialState: true, segments: 'all' });
    keptGrads.segments.forEach((seg, i) => expect(Buffer.concat([
      ...seg.map((g) => Buffer.from(g!.buffer, g!.byteOffset, g!.byteLength)),
      ...keptGrads.initialState![i]!.flatMap((l) => [l.conv, l.ssm, l.k, l.v].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))),
      Buffer.from(new Float64Array([kept.exampleLoss[i]!]).buffer),
    ]).equals(batched[i]!)).toBe(true));
    // In another process with one thread: the same bytes.
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-grad-')), 'one-thread.bin');
    const script = `
      const { loadModel } = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'lib'))});
      const fs = require('fs');
      (async () => {
        const model = await loadModel(${JSON.stringify(TINY_RANDOM)});
        const seq = model.createSequence();
        await seq.evaluate(${JSON.stringify([BOS, 5, 6, 7])}, { logits: 'none' });
        const ex = { segments: [{ ids: [1] }, { embeds: new Float32Array(${model.config.hiddenSize}).fill(0.01) }, { ids: [9, 10, 11, 12] }], targets: 'next', initialState: seq.snapshot() };
        const tape = await model.forwardForGrad([ex]);
        const res = await tape.backward({}, { initialState: true });
        fs.writeFileSync(process.argv[1], Buffer.concat([Buffer.from(res.segments[0][1].buffer), ...res.initialState[0].flatMap((l) => [l.conv, l.ssm, l.k, l.v].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)))]));
        await model.dispose();
      })();`;
    execFileSync(process.execPath, ['-e', script, file], { env: { ...process.env, JAMBA_THREADS: '1' } });
    const seq = model.createSequence();
    await seq.evaluate([BOS, 5, 6, 7], { logits: 'none' });
    const ex: GradExample = { segments: [{ ids: [1] }, { embeds: new Float32Array(model.config.hiddenSize).fill(0.01) }, { ids: [9, 10, 11, 12] }], targets: 'next', initialState: seq.snapshot() };
    const tape = await model.forwardForGrad([ex]);
    const res = await tape.backward({}, { initialState: true });
    const here = Buffer.concat([Buffer.from(res.segments[0]![1]!.buffer), ...res.initialState![0]!.flatMap((l) => [l.conv, l.ssm, l.k, l.v].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)))]);
    expect(fs.readFileSync(file).equals(here)).toBe(true);
  } finally {
    await model.dispose();
  }
});

test('valueAndGrad: the mean loss over the batch, and the gradient of each embeds segment (null for token segments)', async () => {
  const model = await loadModel(EMBEDDED);
  try {
    const H = model.config.hiddenSize;
    const p = new Float32Array(2 * H).fill(0.02);
    const exs: GradExample[] = [
      { segments: [{ ids: [BOS] }, { embeds: p }, { ids: [20, 30, 40] }], targets: 'next' },
      { segments: [{ ids: [BOS, 50] }, { embeds: p }, { ids: [60] }], targets: 'next' },
    ];
    const { loss, grads } = await model.valueAndGrad(exs);
    // 'next': rows whose next row is a token: example 0 has rows 2, 3, 4 → 3 targets (row 0 is followed by a vector); example 1 has 0 and 3 → 2.
    const sum = await model.forwardForGrad(exs, { reduction: 'sum' });
    expect(loss).toBeCloseTo(sum.loss / 5, 6);
    sum.dispose();
    expect(grads.map((g) => g.map((x) => (x ? x.length : null)))).toEqual([[null, 2 * H, null], [null, 2 * H, null]]);
    // The mean's gradient is the sum's over the total weight.
    const tape = await model.forwardForGrad(exs, { reduction: 'sum' });
    const s = await tape.backward();
    for (let i = 0; i < 2; i++) expect(relErr(grads[i]![1]!, s.segments[i]![1]!.map((v) => v / 5))).toBeLessThan(1e-6);
  } finally {
    await model.dispose();
  }
});

test('cotangents on the hidden states, an early exit, and outputs', async () => {
  const model = await loadModel(TINY_RANDOM);
  try {
    const { cfg, w } = loadWeights(TINY_RANDOM);
    const H = cfg.hiddenSize;
    const soft = Float32Array.from({ length: 2 * H }, (_, i) => Math.sin(i) * 0.05);
    const ids = [BOS, 40, 41, 42, 43];
    const ex: GradExample = { segments: [{ embeds: soft }, { ids }] };
    const tape = await model.forwardForGrad([ex], { outputs: ['hidden', 'logits'] });
    expect(tape.loss).toBe(0);
    const T = 2 + ids.length;
    expect(tape.hidden![0]!.length).toBe(T * H);
    expect(tape.logits![0]!.length).toBe(T * cfg.vocabSize);
    const cot = Float32Array.from({ length: T * H }, (_, i) => Math.cos(i));
    const res = await tape.backward({ hidden: [cot] });
    const rows = new Float64Array(T * H);
    rows.set(f64(soft));
    ids.forEach((id, t) => rows.set(w.get('model.embed_tokens.weight')!.subarray(id * H, (id + 1) * H), (2 + t) * H));
    const ref = referenceGrad(cfg, w, rows, { dHidden: f64(cot) });
    expect(relErr(tape.hidden![0]!, ref.hidden)).toBeLessThan(1e-5);
    expect(relErr(res.segments[0]![0]!, ref.dRows.subarray(0, 2 * H))).toBeLessThan(1e-4);
    await expect(tape.backward()).rejects.toThrow(/runs backward once/);
    // An early exit (ID-PT's generator reads an early layer): the residual stream after 3 layers
    // (attention is layer 2), and the gradient of a cotangent on it.
    const early = await model.forwardForGrad([ex], { stopAtLayer: 3, outputs: ['hidden'] });
    const dEarly = await early.backward({ hidden: [cot] });
    const refEarly = referenceGrad(cfg, w, rows, { layers: 3, dHidden: f64(cot) });
    expect(relErr(early.hidden![0]!, refEarly.hidden)).toBeLessThan(1e-5);
    expect(relErr(dEarly.segments[0]![0]!, refEarly.dRows.subarray(0, 2 * H))).toBeLessThan(1e-4);
  } finally {
    await model.dispose();
  }
});

test('bad input is refused by name, an abort stops it, and the model stays usable', async () => {
  const model = await loadModel(EMBEDDED);
  try {
    const H = model.config.hiddenSize;
    const bad: Array<[unknown, RegExp]> = [
      [[], /non-empty array/],
      [[{ segments: [] }], /examples\[0\]\.segments must be a non-empty array/],
      [[{ segments: [{ ids: [1, 5000] }] }], /examples\[0\]\.segments\[0\]\.ids\[1\] = 5000/],
      [[{ segments: [{ embeds: new Float32Array(H + 1) }] }], /not a whole number of rows/],
      [[{ segments: [{ embeds: new Float32Array(H).fill(NaN) }] }], /embeds\[0\] = NaN is not finite/],
      [[{ segments: [{ ids: [1, 2] }], targets: { rows: [5], ids: [3] } }], /targets\.rows\[0\] = 5 is not a row/],
      [[{ segments: [{ ids: [1, 2] }], targets: { rows: [0], ids: [3], weights: [-1] } }], /weights\[0\] must be a finite number ≥ 0/],
      [[{ segments: [{ ids: [1] }], initialState: 'nope' }], /initialState must be a Snapshot/],
      [[{ segments: [{ ids: [1] }], target: 'next' }], /unknown option 'target'/],
    ];
    for (const [exs, msg] of bad) await expect(model.forwardForGrad(exs as GradExample[])).rejects.toThrow(msg);
    await expect(model.forwardForGrad([{ segments: [{ ids: [1] }] }], { stopAtLayer: 99 })).rejects.toThrow(InvalidArgumentError);
    await expect(model.forwardForGrad([{ segments: [{ ids: [1, 2] }], targets: 'next' }], { stopAtLayer: 2 })).rejects.toThrow(/early exit/);
    const tape = await model.forwardForGrad([{ segments: [{ ids: [1, 2, 3] }], targets: 'next' }]);
    await expect(tape.backward({ hidden: [new Float32Array(5)] })).rejects.toThrow(/cotangents\.hidden\[0\] must be a Float32Array of 3 × 128/);
    tape.dispose();
    const ac = new AbortController();
    ac.abort();
    await expect(model.valueAndGrad([{ segments: [{ ids: [1, 2, 3] }], targets: 'next' }], { signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
    // Still usable.
    const ok = await model.valueAndGrad([{ segments: [{ ids: [1] }, { embeds: new Float32Array(H) }, { ids: [7] }], targets: 'next' }]);
    expect(Number.isFinite(ok.loss)).toBe(true);
    expect((await model.complete('ROMEO:\n', { maxTokens: 3, temperature: 0 })).tokens).toHaveLength(3);
  } finally {
    await model.dispose();
  }
});
