/**
 * Training through the frozen model on the GPU (bench/gpu.ts --part train): one Jamba period of
 * Jamba-1.5-Mini's layout (layers 0-7 of test/fixtures/layouts/jamba-1.5-mini.json: 7 Mamba, 1
 * attention, 4 MoE layers of 16 experts, ExpertsInt8) with random weights made on the device, one
 * example of T = 4096 tokens with every row a target. Timed: the plain prefill of the same tokens
 * (2048-token passes, as the library feeds a prompt), forwardForGrad, and backward; the step's cost
 * per token as a multiple of the prefill's. Memory: the device memory the tape holds (measured,
 * cudaMemGetInfo), then the arithmetic for all 32 layers: the weights of the whole model with
 * ExpertsInt8 (from the layout), the tape measured here plus the 24 more layers' checkpoints.
 */
import { parseConfig } from '../lib/config';
import { buildPlan } from '../lib/graph';
import { native } from '../lib/native';
import type { TensorInfo } from '../lib/safetensors';
import { E2eRow, miniLayout, now } from './gpu-e2e';

const GB = 1e9;

/** Bytes of the whole model on the device with ExpertsInt8: experts int8 plus a float32 scale per row, matrices bf16, vectors float32. */
function weightBytes(tensors: Record<string, number[]>): number {
  let b = 0;
  for (const [name, shape] of Object.entries(tensors)) {
    const n = shape.reduce((x, y) => x * y, 1);
    if (/\.experts\.\d+\./.test(name)) b += n + shape[0]! * 4;
    else b += n * (shape.length > 1 ? 2 : 4);
  }
  return b;
}

export async function trainRows(): Promise<E2eRow[]> {
  const { layout } = miniLayout();
  const L = 8, T = 4096;
  const full = parseConfig(layout.config);
  const cfg = parseConfig({ ...layout.config, num_hidden_layers: L });
  const tensors = new Map<string, TensorInfo>();
  for (const [name, shape] of Object.entries(layout.tensors)) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m && Number(m[1]) >= L) continue;
    tensors.set(name, { name, file: 'synthetic:', dtype: 'BF16', shape, offset: 0, nbytes: shape.reduce((a, b) => a * b, 1) * 2 });
  }
  const plan = buildPlan(cfg, tensors, { expertsInt8: true });
  Object.assign(plan, { device: 'cuda', synthetic: true, maxSequences: 1, contextLength: T });
  const cuda = native().cuda!;
  const model = await native().NativeModel.load(plan);
  const rows: E2eRow[] = [];
  const shape = `layers 0-7 of Jamba-1.5-Mini (7 Mamba, 1 attention, 4 MoE), ExpertsInt8, T ${T}`;
  try {
    const V = cfg.vocabSize;
    const ids = Int32Array.from({ length: T }, (_, i) => 3 + ((i * 7919) % (V - 3)));
    const example = {
      ids, embeds: new Float32Array(0),
      targetRows: Int32Array.from({ length: T - 1 }, (_, i) => i), targetIds: ids.subarray(1), targetWeights: new Float32Array(T - 1).fill(1),
    };
    // The prefill, as a reference cost (the second of two runs).
    let prefill = Infinity;
    for (let run = 0; run < 2; run++) {
      const seq = model.newSequence();
      const t0 = now();
      for (let o = 0; o < T; o += 2048) await model.forward([seq], [ids.subarray(o, o + 2048)], { logits: 'none' });
      prefill = Math.min(prefill, now() - t0);
      seq.dispose();
    }
    let fwd = Infinity, bwd = Infinity, tapeBytes = 0, loss = 0;
    for (let run = 0; run < 2; run++) {
      const before = cuda.info().freeBytes;
      const t0 = now();
      const r = await model.forwardForGrad([example], {});
      const t1 = now();
      tapeBytes = Math.max(tapeBytes, before - cuda.info().freeBytes);
      await r.tape.backward({});
      const t2 = now();
      r.tape.dispose();
      fwd = Math.min(fwd, t1 - t0);
      bwd = Math.min(bwd, t2 - t1);
      loss = r.loss / (T - 1);
    }
    // Where the backward's time goes, op family by op family (an event after each; recomputed
    // forward ops under their forward names).
    const profiled = await model.forwardForGrad([example], {});
    const profile = (await profiled.tape.backward({ profile: true })).profile ?? [];
    profiled.tape.dispose();
    const step = fwd + bwd;
    rows.push({ kernel: 'training: prefill (reference)', shape, value: `${(prefill * 1000).toFixed(0)} ms, ${(T / prefill).toFixed(0)} tok/s`, ratio: '', target: '' });
    rows.push({ kernel: 'training: forwardForGrad (keeps a residual row per layer; loss and head gradient)', shape, value: `${(fwd * 1000).toFixed(0)} ms`,
      ratio: `${(fwd / prefill).toFixed(2)}× prefill`, target: '' });
    rows.push({ kernel: 'training: backward (recompute + backward of every layer)', shape, value: `${(bwd * 1000).toFixed(0)} ms (${(bwd * 1000 / L).toFixed(0)} ms per layer)`,
      ratio: `${(bwd / prefill).toFixed(2)}× prefill`, target: '' });
    rows.push({ kernel: 'training: a step per token (forward + recompute + backward)', shape, value: `${((step / T) * 1e6).toFixed(0)} µs/token, mean loss ${loss.toFixed(3)}`,
      ratio: `${(step / prefill).toFixed(2)}× the prefill's`, target: '≤ 3× (issue 18, on 2 CPU cores)' });
    const total = profile.reduce((a, p) => a + p.ms, 0);
    for (const p of [...profile].sort((a, b) => b.ms - a.ms))
      rows.push({ kernel: `training backward, op: ${p.op}`, shape: '8 layers', value: `${p.ms.toFixed(1)} ms`, ratio: `${((100 * p.ms) / total).toFixed(0)}% of the backward`, target: '' });
    // All 32 layers: the whole model's weights, and this tape plus 24 more layers' checkpoints (T × hidden float32 each).
    const weights = weightBytes(layout.tensors);
    const tape32 = tapeBytes + (full.numHiddenLayers - L) * T * cfg.hiddenSize * 4;
    // The model's own state pools for one sequence of T tokens (maxSequences 1, contextLength T).
    const mambaLayers = full.layerTypes.filter((t) => t === 'mamba').length;
    const pools = (full.numHiddenLayers - mambaLayers) * 2 * T * full.numKeyValueHeads * full.headDim * 2
      + mambaLayers * full.mambaDInner * (full.mambaDState + full.mambaDConv - 1) * 4;
    const peak = weights + tape32 + pools;
    rows.push({ kernel: 'training memory: the tape of this stack (measured)', shape, value: `${(tapeBytes / GB).toFixed(2)} GB`, ratio: '', target: '' });
    rows.push({ kernel: 'training memory: Jamba-1.5-Mini, 32 layers, ExpertsInt8 (arithmetic)', shape: `T ${T}: weights ${(weights / GB).toFixed(1)} GB, tape ${(tape32 / GB).toFixed(2)} GB, state pools ${(pools / GB).toFixed(2)} GB`,
      value: `${(peak / GB).toFixed(1)} GB`, ratio: peak <= 64 * GB ? 'fits' : 'over', target: '≤ 64 GB' });
  } finally {
    model.dispose();
  }
  return rows;
}
