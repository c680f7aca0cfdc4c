/**
 * The reference with the CUDA executor's bf16 storage (test/helpers/reference-model.ts), which the
 * bf16 GPU checks compare against, and the finding that shaped them: on the tiny-random fixture,
 * bf16 storage alone moves seq2's logits far from float64 by routing tokens to other experts,
 * where the float64 reference decides them by margins bf16 cannot resolve.
 */
import path from 'node:path';
import { bf16, bf16Matrices, bf16Store, expertsInt8Weights, loadWeights, referenceForward } from './helpers/reference-model';
import { relErr } from './helpers/reference-ops';
import { readTensor } from './helpers/st-io';
import { TINY_RANDOM } from './helpers/paths';

const { cfg, w } = loadWeights(TINY_RANDOM);
const ref = path.join(TINY_RANDOM, 'reference.safetensors');
const ids = (i: number) => Array.from(readTensor(ref, `seq${i}.input_ids`).data);
const experts = (logits: Float64Array, T: number) => Array.from({ length: T }, (_, t) => {
  const row = Array.from(logits.subarray(t * cfg.numExperts, (t + 1) * cfg.numExperts));
  return row.map((v, e) => [v, e] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, cfg.numExpertsPerTok).map(([, e]) => e).sort().join();
});

test('bf16 rounds to nearest, ties to even, as the GPU stores', () => {
  expect(bf16(1)).toBe(1);
  expect(bf16(1 + 2 ** -8)).toBe(1);  // a tie: to the even neighbour
  expect(bf16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);  // a tie: to the even neighbour, upwards
  expect(bf16(1 + 2 ** -8 + 2 ** -12)).toBe(1 + 2 ** -7);
  expect(bf16(-3.14159)).toBe(-3.140625);
});

test('bf16 storage keeps seq0 within 2e-2 of float64 but routes seq2 differently and moves it by more than 5e-2', () => {
  const b = bf16Matrices(w);
  const seq0 = referenceForward(cfg, b, ids(0), [], bf16Store);
  expect(relErr(seq0.logits, readTensor(ref, 'seq0.logits').data)).toBeLessThan(2e-2);
  const exact = referenceForward(cfg, w, ids(2));
  const stored = referenceForward(cfg, b, ids(2), [], bf16Store);
  expect(relErr(stored.logits, readTensor(ref, 'seq2.logits').data)).toBeGreaterThan(5e-2);
  let changed = 0;
  for (const [layer, logits] of exact.router) {
    const a = experts(logits, ids(2).length), c = experts(stored.router.get(layer)!, ids(2).length);
    changed += a.filter((x, t) => x !== c[t]).length;
  }
  expect(changed).toBeGreaterThan(0);
});

test('ExpertsInt8 weights: each expert row on a grid of max|row| / 127, within half a step of the original (the float32 division\'s rounding aside), equal to experts_int8.reference.safetensors', () => {
  const int8Ref = path.join(TINY_RANDOM, 'experts_int8.reference.safetensors');
  const inner = (name: string) => (/down_proj/.test(name) ? cfg.intermediateSize : cfg.hiddenSize);
  const q = expertsInt8Weights(w, inner);
  for (const [name, a] of w) {
    const b = q.get(name)!;
    if (!/\.experts\.\d+\./.test(name)) {
      expect(b).toBe(a);
      continue;
    }
    const k = inner(name);
    let worst = 0, offGrid = 0;
    for (let r = 0; r < a.length / k; r++) {
      const row = a.subarray(r * k, (r + 1) * k);
      const scale = Math.fround(Math.max(...Array.from(row, Math.abs)) / 127);
      for (let c = 0; c < k; c++) {
        worst = Math.max(worst, Math.abs(b[r * k + c]! - row[c]!) / scale);
        const steps = b[r * k + c]! / scale;
        if (Math.abs(steps - Math.round(steps)) > 1e-9 || Math.abs(steps) > 127) offGrid++;
      }
    }
    expect([name, offGrid]).toEqual([name, 0]);
    // W / scale is divided in float32 (as defined): a quotient just under n + 0.5 may round to it, then to even.
    expect(worst).toBeLessThanOrEqual(0.5 + 127 * 2 ** -24);
    // And exactly the reference quantization's q · scale.
    const qr = readTensor(int8Ref, name).data, sr = readTensor(int8Ref, name.replace(/weight$/, 'weight_scale')).data;
    let diff = 0;
    for (let i = 0; i < qr.length; i++) if (qr[i]! * sr[Math.floor(i / k)]! !== b[i]) diff++;
    expect([name, diff]).toEqual([name, 0]);
  }
});
