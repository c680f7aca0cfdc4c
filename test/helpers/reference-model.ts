/**
 * A float64 Jamba forward pass written for clarity, not speed: plain loops over the math of
 * transformers' JambaForCausalLM (see shared/docs/jamba-reference.md §4). The tests prove it on
 * the fixtures' references, then hold the optimized engine to it on configurations the fixtures
 * do not cover.
 *
 * `store` is applied to every activation where the CUDA executor keeps it between kernels in its
 * storage type: the identity for the float64 reference, `bf16Store` (with `bf16Matrices` weights)
 * for what the bf16 GPU path computes, so its checks compare like with like.
 */
import { JambaConfig, readConfig } from '../../lib/config';
import { expectedTensors } from '../../lib/graph';
import { readCheckpointTensors } from '../../lib/safetensors';
import { gemmRef, rmsnormRef } from './reference-ops';
import { readTensor } from './st-io';

export type Weights = Map<string, Float64Array>;
/** How an activation is stored between kernels (in place; returns its argument). */
export type Store = (a: Float64Array) => Float64Array;
const exact: Store = (a) => a;

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
/** v rounded to bf16 (nearest, ties to even), as the GPU stores it. */
export function bf16(v: number): number {
  f32[0] = v;
  const u = u32[0]!;
  u32[0] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 0) & 0xffff0000;
  return f32[0]!;
}
export const bf16Store: Store = (a) => {
  for (let i = 0; i < a.length; i++) a[i] = bf16(a[i]!);
  return a;
};
/** The weights as the CUDA executor holds them: matrices in bf16; norms, conv taps, A, D and biases in float32 (exact here). */
export function bf16Matrices(w: Weights): Weights {
  return new Map([...w].map(([name, a]) => [name, /(_proj|embed_tokens|lm_head|router)\.weight$/.test(name) ? a.map(bf16) : a]));
}

/**
 * `w` with every expert matrix ([n, k], k = `cols`) replaced by its ExpertsInt8 value: per row,
 * scale = max|w| / 127 in float32, q = round half to even of w / scale, clamped to ±127 (csrc/cpu/gemm.h).
 */
export function expertsInt8Weights(w: Weights, cols: (name: string) => number): Weights {
  const out = new Map(w);
  for (const [name, a] of w) {
    if (!/\.experts\.\d+\./.test(name)) continue;
    const k = cols(name), q = new Float64Array(a.length);
    for (let r = 0; r < a.length / k; r++) {
      let max = 0;
      for (let c = 0; c < k; c++) max = Math.max(max, Math.abs(a[r * k + c]!));
      const scale = Math.fround(max / 127);
      for (let c = 0; c < k; c++) {
        const v = scale ? a[r * k + c]! / scale : 0, f = Math.floor(v), d = v - f;
        const n = d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
        q[r * k + c] = Math.max(-127, Math.min(127, n)) * scale;
      }
    }
    out.set(name, q);
  }
  return out;
}

export function loadWeights(dir: string): { cfg: JambaConfig; w: Weights } {
  const cfg = readConfig(dir);
  const tensors = readCheckpointTensors(dir);
  const w: Weights = new Map();
  for (const t of expectedTensors(cfg)) w.set(t.name, readTensor(tensors.get(t.name)!.file, t.name).data);
  return { cfg, w };
}

const linear = (x: Float64Array, T: number, K: number, W: Float64Array, N: number, bias?: Float64Array) => gemmRef(x, T, W, N, K, bias);
const rmsnorm = rmsnormRef;
const silu = (v: number) => v / (1 + Math.exp(-v));
const softplus = (v: number) => (v <= 20 ? Math.log1p(Math.exp(v)) : v);

/** The MLP's down projection, before it is stored (an expert's is scaled by its routing weight first). */
function mlp(w: Weights, p: string, x: Float64Array, T: number, H: number, I: number, store: Store): Float64Array {
  const g = store(linear(x, T, H, w.get(`${p}.gate_proj.weight`)!, I));
  const u = store(linear(x, T, H, w.get(`${p}.up_proj.weight`)!, I));
  for (let i = 0; i < g.length; i++) g[i] = silu(g[i]!) * u[i]!;
  return linear(store(g), T, I, w.get(`${p}.down_proj.weight`)!, H);
}

function attention(cfg: JambaConfig, w: Weights, p: string, x: Float64Array, T: number, store: Store): Float64Array {
  const H = cfg.hiddenSize, nh = cfg.numAttentionHeads, kvh = cfg.numKeyValueHeads, hd = cfg.headDim;
  const q = store(linear(x, T, H, w.get(`${p}.q_proj.weight`)!, nh * hd));
  const k = store(linear(x, T, H, w.get(`${p}.k_proj.weight`)!, kvh * hd));
  const v = store(linear(x, T, H, w.get(`${p}.v_proj.weight`)!, kvh * hd));
  const o = new Float64Array(T * nh * hd);
  for (let h = 0; h < nh; h++) {
    const g = Math.floor(h / (nh / kvh));
    for (let t = 0; t < T; t++) {
      const s: number[] = [];
      for (let j = 0; j <= t; j++) {
        let d = 0;
        for (let e = 0; e < hd; e++) d += q[t * nh * hd + h * hd + e]! * k[j * kvh * hd + g * hd + e]!;
        s.push(d / Math.sqrt(hd));
      }
      const m = Math.max(...s);
      const p2 = s.map((z) => Math.exp(z - m));
      const z = p2.reduce((a, b) => a + b, 0);
      for (let e = 0; e < hd; e++) {
        let acc = 0;
        for (let j = 0; j <= t; j++) acc += (p2[j]! / z) * v[j * kvh * hd + g * hd + e]!;
        o[t * nh * hd + h * hd + e] = acc;
      }
    }
  }
  return store(linear(store(o), T, nh * hd, w.get(`${p}.o_proj.weight`)!, H));
}

function mamba(cfg: JambaConfig, w: Weights, p: string, x: Float64Array, T: number, store: Store): Float64Array {
  const H = cfg.hiddenSize, Di = cfg.mambaDInner, N = cfg.mambaDState, R = cfg.mambaDtRank, K = cfg.mambaDConv;
  const eps = cfg.rmsNormEps;
  const xz = store(linear(x, T, H, w.get(`${p}.in_proj.weight`)!, 2 * Di, w.get(`${p}.in_proj.bias`)));
  const cw = w.get(`${p}.conv1d.weight`)!, cb = w.get(`${p}.conv1d.bias`);
  const u = new Float64Array(T * Di);
  for (let t = 0; t < T; t++)
    for (let d = 0; d < Di; d++) {
      let s = cb ? cb[d]! : 0;
      for (let j = 0; j < K; j++) {
        const src = t - (K - 1) + j;
        if (src >= 0) s += cw[d * K + j]! * xz[src * 2 * Di + d]!;
      }
      u[t * Di + d] = silu(s);
    }
  const proj = linear(store(u), T, Di, w.get(`${p}.x_proj.weight`)!, R + 2 * N);
  const slice = (from: number, len: number) => {
    const out = new Float64Array(T * len);
    for (let t = 0; t < T; t++) for (let i = 0; i < len; i++) out[t * len + i] = proj[t * (R + 2 * N) + from + i]!;
    return out;
  };
  const dt = store(rmsnorm(slice(0, R), T, R, w.get(`${p}.dt_layernorm.weight`)!, eps));
  const B = store(rmsnorm(slice(R, N), T, N, w.get(`${p}.b_layernorm.weight`)!, eps));
  const C = store(rmsnorm(slice(R + N, N), T, N, w.get(`${p}.c_layernorm.weight`)!, eps));
  // dt_proj's output is stored; its bias is added where softplus is taken.
  const delta = store(linear(dt, T, R, w.get(`${p}.dt_proj.weight`)!, Di));
  const dtBias = w.get(`${p}.dt_proj.bias`)!;
  const Alog = w.get(`${p}.A_log`)!, D = w.get(`${p}.D`)!;
  const y = new Float64Array(T * Di);
  for (let d = 0; d < Di; d++) {
    const h = new Float64Array(N);
    for (let t = 0; t < T; t++) {
      const dl = softplus(delta[t * Di + d]! + dtBias[d]!), ut = u[t * Di + d]!;
      let acc = 0;
      for (let n = 0; n < N; n++) {
        h[n] = Math.exp(dl * -Math.exp(Alog[d * N + n]!)) * h[n]! + dl * B[t * N + n]! * ut;
        acc += h[n]! * C[t * N + n]!;
      }
      y[t * Di + d] = (acc + D[d]! * ut) * silu(xz[t * 2 * Di + Di + d]!);
    }
  }
  return store(linear(store(y), T, Di, w.get(`${p}.out_proj.weight`)!, H, w.get(`${p}.out_proj.bias`)));
}

function moe(cfg: JambaConfig, w: Weights, p: string, x: Float64Array, T: number, routerOut: Float64Array[], store: Store): Float64Array {
  const H = cfg.hiddenSize, E = cfg.numExperts, k = cfg.numExpertsPerTok;
  const logits = linear(x, T, H, w.get(`${p}.router.weight`)!, E);
  routerOut.push(logits);
  const out = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    const row = Array.from(logits.subarray(t * E, (t + 1) * E));
    const m = Math.max(...row);
    const ex = row.map((v) => Math.exp(v - m));
    const z = ex.reduce((a, b) => a + b, 0);
    const order = ex.map((v, i) => [v / z, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k);
    const xt = x.subarray(t * H, (t + 1) * H);
    for (const [prob, e] of order) {
      const y = store(mlp(w, `${p}.experts.${e}`, xt, 1, H, cfg.intermediateSize, store).map((v) => prob * v));
      for (let c = 0; c < H; c++) out[t * H + c] = out[t * H + c]! + y[c]!;
    }
  }
  return out;
}

export interface ReferenceOutputs {
  embed: Float64Array;
  layers: Float64Array[];
  router: Map<number, Float64Array>;
  finalNorm: Float64Array;
  logits: Float64Array;
}

/** The forward pass over `ids`, after `prefixEmbeds` (rows of H values fed in place of token embeddings). */
export function referenceForward(cfg: JambaConfig, w: Weights, ids: number[], prefixEmbeds: ArrayLike<number> = [], store: Store = exact): ReferenceOutputs {
  const H = cfg.hiddenSize, V = cfg.vocabSize;
  const E = prefixEmbeds.length / H;
  const T = E + ids.length;
  const emb = w.get('model.embed_tokens.weight')!;
  const h = new Float64Array(T * H);
  h.set(Array.from(prefixEmbeds), 0);
  ids.forEach((id, t) => h.set(emb.subarray(id * H, (id + 1) * H), (E + t) * H));
  const out: ReferenceOutputs = { embed: h.slice(), layers: [], router: new Map(), finalNorm: new Float64Array(), logits: new Float64Array() };
  for (let i = 0; i < cfg.numHiddenLayers; i++) {
    const p = `model.layers.${i}`;
    let x = store(rmsnorm(h, T, H, w.get(`${p}.input_layernorm.weight`)!, cfg.rmsNormEps));
    let d = cfg.layerTypes[i] === 'attention' ? attention(cfg, w, `${p}.self_attn`, x, T, store) : mamba(cfg, w, `${p}.mamba`, x, T, store);
    for (let j = 0; j < h.length; j++) h[j] = h[j]! + d[j]!;
    x = store(rmsnorm(h, T, H, w.get(`${p}.pre_ff_layernorm.weight`)!, cfg.rmsNormEps));
    if (cfg.layerNumExperts[i]! > 1) {
      const r: Float64Array[] = [];
      d = moe(cfg, w, `${p}.feed_forward`, x, T, r, store);
      out.router.set(i, r[0]!);
    } else {
      d = store(mlp(w, `${p}.feed_forward`, x, T, H, cfg.intermediateSize, store));
    }
    for (let j = 0; j < h.length; j++) h[j] = h[j]! + d[j]!;
    out.layers.push(h.slice());
  }
  out.finalNorm = rmsnorm(h, T, H, w.get('model.final_layernorm.weight')!, cfg.rmsNormEps);
  const head = cfg.tieWordEmbeddings ? emb : w.get('lm_head.weight')!;
  out.logits = linear(store(out.finalNorm.slice()), T, H, head, V);
  return out;
}

/** Largest |a - b| over two arrays of equal length (fails loudly on a length mismatch). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}
