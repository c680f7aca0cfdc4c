/**
 * Training through the frozen model on CUDA (csrc/model/cuda_grad.cpp): the gradients of a loss
 * with respect to input rows (tokens and a soft prompt) and initial states (conv, SSM, K/V
 * prefix) against the float64 reference backward (test/helpers/reference-backward.ts) with the
 * executor's bf16 storage, within relative L2 3e-2, on the fixture (bf16 and ExpertsInt8) and on
 * random configurations (MQA/GQA/MHA, top-1/2/3, tied heads, d_state up to 32, d_conv 2-4, f16
 * and bf16 files). bf16 activations move router logits by a few hundredths, and a routing
 * near-tie at position t changes every gradient at or before t, so targets sit only before the
 * first token the reference routes by a top-k margin under 0.01, and the reference follows the
 * GPU's routing. Then: an example batched with others equals it alone, bit for bit.
 */
import fs from 'node:fs';
// Not '../../lib': its index loads the server (fastify), which the GPU host's packed modules lack.
import type { GradExample } from '../../lib/grad';
import { JambaModel, loadModel } from '../../lib/model';
import { BOS, gradInputs, referenceInputs, routingOf } from '../helpers/grad-example';
import { TINY_RANDOM } from '../helpers/paths';
import { writeRandomCheckpoint } from '../helpers/random-checkpoint';
import { BASE, CASES, GPU_CASES } from '../helpers/random-configs';
import { referenceGrad } from '../helpers/reference-backward';
import { LayerTape, bf16Matrices, bf16Store, expertsInt8Weights, loadWeights, referenceForwardRows } from '../helpers/reference-model';
import { concatF64 } from '../helpers/reference-ops';
import { rng } from '../helpers/rng';
import { relErr } from './checks';
import type { ModelCheck } from './model-checks';

const TOL = 3e-2;

/** The first row the reference routes by a top-k margin under 0.01 in some MoE layer (rows if none). */
function firstNearTie(tape: LayerTape[], E: number, k: number, rows: number): number {
  let first = rows;
  for (const lt of tape) {
    if (lt.ff.kind !== 'moe' || k >= E) continue;
    for (let t = 0; t < first; t++) {
      const row = Array.from(lt.ff.logits.subarray(t * E, (t + 1) * E)).sort((a, b) => b - a);
      if (row[k - 1]! - row[k]! < 0.01) first = t;
    }
  }
  return first;
}

interface Case { label: string; dir: string; int8?: boolean; soft: number; tokens: number; prefix: number; seed: number }

type Device = 'cuda' | 'cpu';

async function gradCheck(device: Device, c: Case): Promise<number> {
  const model = await loadModel(c.dir, { device, expertsInt8: c.int8 ?? false });
  try {
    const { cfg, w: raw } = loadWeights(c.dir);
    const inner = (name: string) => (/down_proj/.test(name) ? cfg.intermediateSize : cfg.hiddenSize);
    // On CUDA the reference holds the executor's bf16 matrices and stores its activations in bf16.
    const exact = c.int8 ? expertsInt8Weights(raw, inner) : raw;
    const w = device === 'cuda' ? bf16Matrices(exact) : exact, store = device === 'cuda' ? bf16Store : undefined;
    const H = cfg.hiddenSize, V = cfg.vocabSize, r = rng(c.seed);
    const inputs = await gradInputs(model, c, r);
    const { soft, ids, snap } = inputs;
    // The rows as the executor starts from them: bf16 embedding rows (on CUDA), the soft prompt as given.
    const { rows, count, initial } = referenceInputs(w.get('model.embed_tokens.weight')!, H, inputs);
    const tape0: LayerTape[] = [];
    referenceForwardRows(cfg, w, rows, { initial, tape: tape0, store });
    const decided = firstNearTie(tape0, cfg.numExperts, cfg.numExpertsPerTok, count);
    if (decided < 2) return 0;
    const n = decided - 1;
    const targets = { rows: Array.from({ length: n }, (_, i) => i), ids: Array.from({ length: n }, () => Math.floor(r() * V)),
      weights: Array.from({ length: n }, () => 0.25 + r()) };
    const ex: GradExample = { segments: [{ ids: [BOS] }, ...(c.soft ? [{ embeds: soft }] : []), { ids }], targets };
    if (snap) ex.initialState = snap;
    const tape = await model.forwardForGrad([ex], { reduction: 'sum', outputs: ['routing'] });
    const res = await tape.backward({}, { initialState: true, segments: 'all' });
    const routing = routingOf(tape.routing!, cfg.numExpertsPerTok);
    const ref = referenceGrad(cfg, w, rows, { initial, routing, targets, denom: 1, store });
    const errs: Array<[string, number]> = [['loss', Math.abs(tape.loss - ref.loss) / Math.abs(ref.loss)],
      ['input rows', relErr(concatF64(res.segments[0]!.map((g) => g!)), ref.dRows)]];
    if (initial)
      for (const key of ['conv', 'ssm', 'k', 'v'] as const) {
        const b = ref.dInitial.map((l) => l[key] ?? new Float64Array(0));
        if (b.some((x) => x.length)) errs.push([`initial ${key}`, relErr(concatF64(res.initialState![0]!.map((l) => l[key])), concatF64(b))]);
      }
    process.stdout.write(`  ${device} ${c.label}: targets on rows 0-${n - 1} of ${count}; ${errs.map(([k, e]) => `${k} ${e.toExponential(1)}`).join(', ')}\n`);
    const bad = errs.filter(([, e]) => !(e <= TOL));
    if (bad.length)
      throw new Error(`${c.label}, targets on rows 0-${n - 1} of ${count}: ${bad.map(([k, e]) => `${k} ${e.toExponential(2)}`).join(', ')} > ${TOL}`);
    return n;
  } finally {
    await model.dispose();
  }
}

/** The gradients of `examples` as bytes, for bitwise comparison. */
async function gradBytes(model: JambaModel, examples: GradExample[]): Promise<Buffer[]> {
  const tape = await model.forwardForGrad(examples, { reduction: 'sum' });
  const res = await tape.backward({}, { initialState: true, segments: 'all' });
  const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  return res.segments.map((seg, i) => Buffer.concat([...seg.map((g) => bytes(g!)),
    ...res.initialState![i]!.flatMap((l) => [l.conv, l.ssm, l.k, l.v].map(bytes)), Buffer.from(new Float64Array([tape.exampleLoss[i]!]).buffer)]));
}

/**
 * The checks on `device`: 'cuda' on the GPU host; 'cpu' shows by hand that the harness passes an
 * engine it should pass (the float32 CPU backward is within 1e-4 of the exact reference).
 */
export function trainChecksOn(device: Device): ModelCheck[] {
  return [
    {
      name: `training on ${device}, tiny-random fixture, bf16 and ExpertsInt8: input-row and initial-state gradients against the float64 reference`,
      async run() {
        // Its random router settles many tokens by margins under 0.01: several examples each.
        let compared = 0;
        for (const seed of [1, 2, 3]) {
          compared += await gradCheck(device, { label: `zero state, seed ${seed}`, dir: TINY_RANDOM, soft: 3, tokens: 40, prefix: 0, seed });
          compared += await gradCheck(device, { label: `from a 9-token state, seed ${seed}`, dir: TINY_RANDOM, soft: 2, tokens: 70, prefix: 9, seed: 10 + seed });
          compared += await gradCheck(device, { label: `ExpertsInt8, from a 5-token state, seed ${seed}`, dir: TINY_RANDOM, int8: true, soft: 2, tokens: 50, prefix: 5, seed: 20 + seed });
        }
        if (compared < 40) throw new Error(`only ${compared} target rows came before a routing near-tie: too few to test`);
      },
    },
    {
      name: `training on ${device}, random configurations (MQA/GQA/MHA, top-1/2/3, tied heads, d_state to 32, f16/bf16 files): gradients against the reference`,
      async run() {
        let compared = 0;
        for (const [i, [label, raw, dtype, shards]] of [...CASES, ...GPU_CASES].entries()) {
          const dir = writeRandomCheckpoint({ ...BASE, ...raw }, { dtype, shards, seed: 300 + i });
          try {
            compared += await gradCheck(device, { label, dir, soft: 2, tokens: i === 0 ? 300 : 40, prefix: i % 2 ? 6 : 0, seed: 30 + i });
          } finally {
            fs.rmSync(dir, { recursive: true, force: true });
          }
        }
        if (compared < 100) throw new Error(`only ${compared} target rows came before a routing near-tie: too few to test`);
      },
    },
    {
      // The tape copies an initial state to the host and keeps its own pools: training from a
      // snapshot needs no free sequence slot of the model.
      name: `training on ${device}: from a snapshot while every sequence slot of the model is in use`,
      async run() {
        const model = await loadModel(TINY_RANDOM, { device, maxSequences: 1 });
        try {
          const seq = model.createSequence();
          await seq.evaluate([BOS, 5, 6, 7], { logits: 'none' });
          const ex: GradExample = { segments: [{ ids: [8, 9, 10] }], targets: 'next', initialState: seq.snapshot() };
          const { loss } = await model.valueAndGrad([ex]);
          if (!Number.isFinite(loss)) throw new Error(`loss ${loss}`);
          seq.dispose();
        } finally {
          await model.dispose();
        }
      },
    },
    {
      name: `training on ${device}: an example batched with others equals it alone, bit for bit`,
      async run() {
        const model = await loadModel(TINY_RANDOM, { device });
        try {
          const H = model.config.hiddenSize, V = model.config.vocabSize;
          const exs: GradExample[] = [];
          for (const [i, [soft, tokens, prefix]] of [[2, 75, 4], [0, 5, 0], [3, 33, 12]].entries()) {
            const r = rng(40 + i);
            const ids = Array.from({ length: tokens! }, () => 3 + Math.floor(r() * (V - 3)));
            const rowsN = 1 + soft! + tokens!;
            const ex: GradExample = {
              segments: [{ ids: [BOS] }, ...(soft ? [{ embeds: Float32Array.from({ length: soft * H }, () => (r() - 0.5) * 0.1) }] : []), { ids }],
              targets: { rows: Array.from({ length: rowsN }, (_, j) => j), ids: Array.from({ length: rowsN }, () => Math.floor(r() * V)) },
            };
            if (prefix) {
              const seq = model.createSequence();
              await seq.evaluate([BOS, ...ids.slice(0, prefix! - 1)], { logits: 'none' });
              ex.initialState = seq.snapshot();
              seq.dispose();
            }
            exs.push(ex);
          }
          const batched = await gradBytes(model, exs);
          for (const [i, ex] of exs.entries())
            if (!(await gradBytes(model, [ex]))[0]!.equals(batched[i]!)) throw new Error(`example ${i} batched differs from alone`);
        } finally {
          await model.dispose();
        }
      },
    },
  ];
}

export const trainChecks = trainChecksOn('cuda');
