/**
 * End to end on the GPU with Jamba-1.5-Mini's layout (test/fixtures/layouts/jamba-1.5-mini.json:
 * 32 layers, 4 of them attention, MoE of 16 experts on every other layer) and random bf16
 * weights made on the device (the real checkpoint is 103 GB, the GPU host's disk 64 GB), with
 * ExpertsInt8. Decode at batch 1 and 16 as a fraction of the bandwidth roofline (the bytes a step
 * must read, at the device copy rate), prefill of an 8K prompt as model FLOP/s over the measured
 * bf16 GEMM rate, and the memory check: the 52B model with ExpertsInt8 and a 256K-token context
 * on the GPU.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../lib/config';
import { buildPlan, parameterCounts } from '../lib/graph';
import { NativeModel, native } from '../lib/native';
import type { TensorInfo } from '../lib/safetensors';
import { LAYOUTS } from '../test/helpers/paths';

export interface E2eRow { kernel: string; shape: string; value: string; ratio: string; target: string; predicted?: string }

export const now = () => Number(process.hrtime.bigint()) / 1e9;

/** Jamba-1.5-Mini's layout, to be loaded with random weights made on the device, with ExpertsInt8. */
export function miniLayout() {
  const layout = JSON.parse(fs.readFileSync(path.join(LAYOUTS, 'jamba-1.5-mini.json'), 'utf8')) as {
    config: Record<string, unknown>; tensors: Record<string, number[]>;
  };
  const cfg = parseConfig(layout.config);
  const tensors = new Map<string, TensorInfo>();
  for (const [name, shape] of Object.entries(layout.tensors)) {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors.set(name, { name, file: 'synthetic:', dtype: 'BF16', shape, offset: 0, nbytes: n * 2 });
  }
  const load = (maxSequences: number, contextLength: number): Promise<NativeModel> => {
    const plan = buildPlan(cfg, tensors, { expertsInt8: true });
    Object.assign(plan, { device: 'cuda', synthetic: true, maxSequences, contextLength });
    return native().NativeModel.load(plan);
  };
  const V = cfg.vocabSize;
  /** n token ids, a different run for each seed. */
  const ids = (n: number, seed: number) => Int32Array.from({ length: n }, (_, i) => 3 + ((i * 7919 + seed * 104729) % (V - 3)));
  return { layout, cfg, load, ids };
}

export async function endToEnd(copyGBs: number, gemmTflops: number, review: Record<string, string> = {},
                                parts = { decode: true, prefill: true }, rateName = 'the cuBLAS rate'): Promise<E2eRow[]> {
  const { layout, cfg, load, ids } = miniLayout();
  const rows: E2eRow[] = [];
  const cuda = native().cuda!;

  // Bytes one decode step reads at batch B: every non-expert weight (bf16), the experts the batch
  // routes to (int8; uniform routing touches E(1 - (1 - k/E)^B) of them per layer), the LM head,
  // and per sequence the Mamba states (read and written) and the KV cache.
  const H = cfg.hiddenSize, E = cfg.numExperts, k = cfg.numExpertsPerTok, I = cfg.intermediateSize;
  let nonExpert = 0;
  for (const [name, shape] of Object.entries(layout.tensors)) {
    if (/\.experts\.\d+\./.test(name) || name === 'model.embed_tokens.weight') continue;
    nonExpert += shape.reduce((a, b) => a * b, 1) * (shape.length > 1 ? 2 : 4);
  }
  const moeLayers = cfg.layerNumExperts.filter((e) => e > 1).length, mamba = cfg.layerTypes.filter((t) => t === 'mamba').length;
  const stepBytes = (B: number, ctx: number) => {
    const experts = E * (1 - (1 - k / E) ** B);
    return nonExpert + moeLayers * experts * 3 * I * H + B * (mamba * cfg.mambaDInner * (cfg.mambaDState + cfg.mambaDConv - 1) * 4 * 2
      + (cfg.numHiddenLayers - mamba) * ctx * cfg.numKeyValueHeads * cfg.headDim * 2 * 2);
  };

  const model = await load(16, 8192 + 256);
  try {
    // As generation runs: the token is drawn on the device, no logits come back. Temperature
    // alone takes the one-pass sampler; top-p 0.95 the sorting one (review B12), labelled so.
    for (const B of parts.decode ? [1, 16] : []) {
      for (const topP of [1, 0.95]) {
        const seqs = Array.from({ length: B }, () => model.newSequence());
        await model.forward(seqs, seqs.map((_, b) => ids(512, b)), { logits: 'last' });
        const steps = 32;
        const sample = seqs.map(() => ({ temperature: 0.8, topK: 0, topP, seed: 1, step: 0 }));
        await model.forward(seqs, seqs.map((_, b) => ids(1, b + 1)), { logits: 'last', sample });  // warm: captures the graph
        const t0 = now();
        for (let s = 0; s < steps; s++) await model.forward(seqs, seqs.map((_, b) => ids(1, s * B + b)), { logits: 'last', sample });
        const dt = (now() - t0) / steps;
        seqs.forEach((q) => q.dispose());
        const roof = stepBytes(B, 512 + steps) / (copyGBs * 1e9);
        const how = topP < 1 ? `temperature 0.8, top-p ${topP}` : 'temperature 0.8';
        rows.push({ kernel: `end to end: decode, batch ${B}, ${how}`, shape: 'Jamba-1.5-Mini layout, ExpertsInt8, 512-token context',
          value: `${((B / dt)).toFixed(1)} tok/s (${(dt * 1000).toFixed(2)} ms/step)`, ratio: `${((100 * roof) / dt).toFixed(0)}% of roofline`,
          target: B === 1 ? '≤ 6.0 ms (H200), ≤ 8.5 ms (H100)' : '≤ 19 ms (H200), ≤ 27 ms (H100)', predicted: review[`decode b${B}${topP < 1 ? ' top-p' : ''}`] ?? '' });
      }
    }
    // An 8K prompt as the library feeds it: passes of prefillChunkTokens (2048 by default on
    // CUDA), beside 512 (the CPU's) and one pass, to show where the chunk size should sit.
    for (const chunk of parts.prefill ? [512, 2048, 8192] : []) {
      const T = 8192;
      const seq = model.newSequence();
      const t0 = now();
      for (let o = 0; o < T; o += chunk) await model.forward([seq], [ids(chunk, o)], { logits: o + chunk >= T ? 'last' : 'none' });
      const dt = now() - t0;
      seq.dispose();
      const active = parameterCounts(cfg).active;
      const flops = 2 * active * T + (cfg.numHiddenLayers - mamba) * 2 * T * T * cfg.numAttentionHeads * cfg.headDim;
      rows.push({ kernel: `end to end: prefill of 8K tokens in passes of ${chunk}`, shape: 'Jamba-1.5-Mini layout, ExpertsInt8',
        value: `${(T / dt).toFixed(0)} tok/s, ${(flops / dt / 1e12).toFixed(0)} TFLOP/s`,
        ratio: `${((100 * flops) / dt / 1e12 / gemmTflops).toFixed(0)}% of ${rateName}`, target: chunk === 2048 ? '≥ 50% of the cuBLAS rate' : '' });
    }
  } finally {
    model.dispose();
  }
  if (!parts.prefill) return rows;
  // The memory check: one sequence of 256K tokens.
  const before = cuda.info().freeBytes;
  const big = await load(1, 262144);
  const used = before - cuda.info().freeBytes;
  big.dispose();
  rows.push({ kernel: 'memory: 52B model, ExpertsInt8, 256K context', shape: '1 sequence', value: `${(used / 2 ** 30).toFixed(1)} GiB on the device`,
    ratio: `${used <= 80e9 ? 'fits' : 'does not fit'} in 80 GB`, target: '≤ 80 GB' });
  return rows;
}
