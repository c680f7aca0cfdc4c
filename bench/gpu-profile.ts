/**
 * Where a decode step's time goes (`node dist/bench/gpu.js --profile`; needs no Nsight): one
 * step of Jamba-1.5-Mini's layout (random weights made on the device, ExpertsInt8) at batch 1 and
 * 16, timed op family by op family with CUDA events on an uncaptured pass, beside the bytes each
 * family must read (weights, the experts the batch routes to, states and KV) and the fraction of
 * the device copy bandwidth that makes. The families' sum is compared with the measured step (the
 * captured graph, as generation runs it): events and launches add the difference.
 */
import type { JambaConfig } from '../lib/config';
import { E2eRow, miniLayout, now } from './gpu-e2e';

/** A decode step's fused Mamba kernel after x_proj (csrc/model/cuda_model.cpp names it so). */
const DECODE_STEP = 'mamba dt/B/C norms + dt_proj + state update';

/** The family of the executor's profile (csrc/model/cuda_model.cpp) that reads a tensor. */
function familyOf(name: string): string | null {
  const rules: Array<[RegExp, string]> = [
    [/mamba\.in_proj\./, 'mamba in_proj'], [/mamba\.x_proj\./, 'mamba x_proj'], [/mamba\.dt_proj\.weight/, DECODE_STEP],
    [/mamba\.out_proj\./, 'mamba out_proj'], [/mamba\.conv1d\./, 'mamba conv'],
    [/mamba\.(A_log|D|dt_proj\.bias|dt_layernorm|b_layernorm|c_layernorm)/, DECODE_STEP], [/self_attn\.[qkv]_proj/, 'attention q|k|v'], [/self_attn\.o_proj/, 'attention o'],
    [/feed_forward\.router/, 'MoE router'], [/experts\.\d+\.(gate|up)_proj/, 'experts gate|up'], [/experts\.\d+\.down_proj/, 'experts down'],
    [/feed_forward\.(gate|up)_proj/, 'dense MLP gate|up'], [/feed_forward\.down_proj/, 'dense MLP down'],
    [/layernorm/, 'residual add + norm'], [/^lm_head\./, 'LM head'],
  ];
  for (const [re, family] of rules) if (re.test(name)) return family;
  return null;
}

/** Bytes each family reads in one decode step of `batch` sequences at `ctx` positions. */
function bytesByFamily(cfg: JambaConfig, tensors: Record<string, number[]>, batch: number, ctx: number): Map<string, number> {
  const out = new Map<string, number>();
  const add = (family: string, bytes: number) => out.set(family, (out.get(family) ?? 0) + bytes);
  // Uniform routing touches E(1 - (1 - k/E)^B) of a layer's experts.
  const E = cfg.numExperts, active = E * (1 - (1 - cfg.numExpertsPerTok / E) ** batch) / E;
  for (const [name, shape] of Object.entries(tensors)) {
    const family = familyOf(name);
    if (!family) continue;
    const n = shape.reduce((a, b) => a * b, 1);
    if (family.startsWith('experts')) add(family, active * (n + 4 * shape[0]!));  // int8 values and a float32 scale per row
    else add(family, shape.length > 1 && !family.startsWith('mamba conv') ? 2 * n : 4 * n);  // bf16 matrices; float32 vectors and taps
  }
  const mamba = cfg.layerTypes.filter((t) => t === 'mamba').length, attention = cfg.numHiddenLayers - mamba;
  add('embedding', batch * cfg.hiddenSize * 2);
  add('mamba conv', batch * mamba * cfg.mambaDInner * (cfg.mambaDConv - 1) * 4 * 2);  // states read and written
  add(DECODE_STEP, batch * mamba * cfg.mambaDInner * cfg.mambaDState * 4 * 2);
  add('attention', batch * attention * ctx * cfg.numKeyValueHeads * cfg.headDim * 2 * 2);  // keys and values
  return out;
}

export async function profileDecode(copyGBs: number): Promise<E2eRow[]> {
  const { layout, cfg, load, ids } = miniLayout();
  const rows: E2eRow[] = [];
  const model = await load(16, 1024);
  try {
    for (const B of [1, 16]) {
      const seqs = Array.from({ length: B }, () => model.newSequence());
      const prompt = 512, steps = 32;
      await model.forward(seqs, seqs.map((_, b) => ids(prompt, b)), { logits: 'last' });
      const sample = seqs.map(() => ({ temperature: 0.8, topK: 0, topP: 0.95, seed: 1, step: 0 }));
      const step = (s: number, profile: boolean) => model.forward(seqs, seqs.map((_, b) => ids(1, s * B + b)), { logits: 'last', sample, profile });
      await step(0, false);  // captures the graph
      const t0 = now();
      for (let s = 1; s <= steps; s++) await step(s, false);
      const stepMs = ((now() - t0) / steps) * 1000;
      await step(steps + 1, true);  // warms the uncaptured path
      const r = await step(steps + 2, true);
      seqs.forEach((q) => q.dispose());
      const bytes = bytesByFamily(cfg, layout.tensors, B, prompt + steps + 3);
      const ops = r.profile ?? [];
      const sum = ops.reduce((t, o) => t + o.ms, 0);
      const ofCopy = (b: number, ms: number) => `${((100 * b) / (ms * 1e-3) / (copyGBs * 1e9)).toFixed(0)}% of copy`;
      let sumBytes = 0;
      for (const { op, ms } of ops) {
        const b = bytes.get(op) ?? 0;
        sumBytes += b;
        rows.push({ kernel: `batch ${B}: ${op}`, shape: b ? `${(b / 1e6).toFixed(1)} MB` : '', value: `${(ms * 1000).toFixed(0)} µs`,
          ratio: `${((100 * ms) / sum).toFixed(1)}% of the ops`, target: b ? ofCopy(b, ms) : '' });
      }
      rows.push({ kernel: `batch ${B}: all ops (profiled, uncaptured)`, shape: `${(sumBytes / 1e6).toFixed(0)} MB`, value: `${(sum * 1000).toFixed(0)} µs`,
        ratio: `${((100 * sum) / stepMs).toFixed(0)}% of the measured step`, target: ofCopy(sumBytes, sum) });
      rows.push({ kernel: `batch ${B}: measured step (graph replay, sampled on the device)`, shape: '', value: `${(stepMs * 1000).toFixed(0)} µs`, ratio: '',
        target: ofCopy(sumBytes, stepMs) });
    }
  } finally {
    model.dispose();
  }
  return rows;
}
