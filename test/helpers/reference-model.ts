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
        // The division in float32, as the definition and the engine take it (in float64 a quotient
        // just under n + 0.5 can round to it in float32, and then to even).
        const v = scale ? Math.fround(a[r * k + c]! / scale) : 0, f = Math.floor(v), d = v - f;
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

/** A sequence's state before the rows (zero and empty when absent): per Mamba layer conv and SSM, per attention layer K and V. */
export interface RefLayerState {
  conv?: Float64Array;  // [Di, K - 1], oldest input first
  ssm?: Float64Array;   // [Di, N]
  k?: Float64Array;     // [past, kvHeads · headDim]
  v?: Float64Array;
}

/** What each layer computed, for the reference backward (test/helpers/reference-backward.ts). */
export interface MlpTape { x: Float64Array; g: Float64Array; u: Float64Array; T: number }
export interface MambaTape {
  kind: 'mamba'; x: Float64Array; xz: Float64Array; s: Float64Array; u: Float64Array; proj: Float64Array;
  dtn: Float64Array; B: Float64Array; C: Float64Array; v: Float64Array; pre: Float64Array; conv0: Float64Array; ssm0: Float64Array;
}
export interface AttentionTape { kind: 'attention'; x: Float64Array; q: Float64Array; k: Float64Array; v: Float64Array; past: number; probs: Float64Array[][]; o: Float64Array }
export interface MoeTape { kind: 'moe'; x: Float64Array; logits: Float64Array; probs: Float64Array; chosen: number[][]; experts: Map<string, MlpTape> }
export interface LayerTape {
  hIn: Float64Array; x1: Float64Array; mixer: MambaTape | AttentionTape; hMid: Float64Array; x2: Float64Array;
  ff: ({ kind: 'mlp' } & MlpTape) | MoeTape;
}

export interface RowsOptions {
  store?: Store;
  initial?: RefLayerState[];
  /** MoE selections to use instead of the top-k (layer → per token, the experts in order): the engine's choice at a near-tie. */
  routing?: Map<number, number[][]>;
  /** Receives each layer's intermediates. */
  tape?: LayerTape[];
  /** Run only the first `layers` layers (an early exit). */
  layers?: number;
}

/** The MLP's down projection, before it is stored (an expert's is scaled by its routing weight first). */
function mlp(w: Weights, p: string, x: Float64Array, T: number, H: number, I: number, store: Store, tape?: MlpTape[]): Float64Array {
  const g = store(linear(x, T, H, w.get(`${p}.gate_proj.weight`)!, I));
  const u = store(linear(x, T, H, w.get(`${p}.up_proj.weight`)!, I));
  tape?.push({ x, g: g.slice(), u, T });
  const a = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) a[i] = silu(g[i]!) * u[i]!;
  return linear(store(a), T, I, w.get(`${p}.down_proj.weight`)!, H);
}

function attention(cfg: JambaConfig, w: Weights, p: string, x: Float64Array, T: number, store: Store, init: RefLayerState | undefined, tape: Array<LayerTape['mixer']>): Float64Array {
  const H = cfg.hiddenSize, nh = cfg.numAttentionHeads, kvh = cfg.numKeyValueHeads, hd = cfg.headDim, kvw = kvh * hd;
  const q = store(linear(x, T, H, w.get(`${p}.q_proj.weight`)!, nh * hd));
  const kNew = store(linear(x, T, H, w.get(`${p}.k_proj.weight`)!, kvw));
  const vNew = store(linear(x, T, H, w.get(`${p}.v_proj.weight`)!, kvw));
  const past = (init?.k?.length ?? 0) / kvw;
  const k = new Float64Array((past + T) * kvw), v = new Float64Array((past + T) * kvw);
  if (past) {
    k.set(init!.k!);
    v.set(init!.v!);
  }
  k.set(kNew, past * kvw);
  v.set(vNew, past * kvw);
  const o = new Float64Array(T * nh * hd);
  const probs: Float64Array[][] = [];
  for (let h = 0; h < nh; h++) {
    const g = Math.floor(h / (nh / kvh));
    probs.push([]);
    for (let t = 0; t < T; t++) {
      const n = past + t + 1;
      const s = new Float64Array(n);
      for (let j = 0; j < n; j++) {
        let d = 0;
        for (let e = 0; e < hd; e++) d += q[t * nh * hd + h * hd + e]! * k[j * kvw + g * hd + e]!;
        s[j] = d / Math.sqrt(hd);
      }
      let m = -Infinity;
      for (const z of s) m = Math.max(m, z);
      let z = 0;
      for (let j = 0; j < n; j++) z += (s[j] = Math.exp(s[j]! - m));
      for (let j = 0; j < n; j++) s[j] = s[j]! / z;
      probs[h]!.push(s);
      for (let e = 0; e < hd; e++) {
        let acc = 0;
        for (let j = 0; j < n; j++) acc += s[j]! * v[j * kvw + g * hd + e]!;
        o[t * nh * hd + h * hd + e] = acc;
      }
    }
  }
  store(o);
  tape.push({ kind: 'attention', x, q, k, v, past, probs, o });
  return store(linear(o, T, nh * hd, w.get(`${p}.o_proj.weight`)!, H));
}

function mamba(cfg: JambaConfig, w: Weights, p: string, x: Float64Array, T: number, store: Store, init: RefLayerState | undefined, tape: Array<LayerTape['mixer']>): Float64Array {
  const H = cfg.hiddenSize, Di = cfg.mambaDInner, N = cfg.mambaDState, R = cfg.mambaDtRank, K = cfg.mambaDConv;
  const eps = cfg.rmsNormEps;
  const xz = store(linear(x, T, H, w.get(`${p}.in_proj.weight`)!, 2 * Di, w.get(`${p}.in_proj.bias`)));
  const cw = w.get(`${p}.conv1d.weight`)!, cb = w.get(`${p}.conv1d.bias`);
  const conv0 = init?.conv ?? new Float64Array(Di * (K - 1)), ssm0 = init?.ssm ?? new Float64Array(Di * N);
  const s = new Float64Array(T * Di), u = new Float64Array(T * Di);
  for (let t = 0; t < T; t++)
    for (let d = 0; d < Di; d++) {
      let acc = cb ? cb[d]! : 0;
      for (let j = 0; j < K; j++) {
        const src = t - (K - 1) + j;
        acc += cw[d * K + j]! * (src >= 0 ? xz[src * 2 * Di + d]! : conv0[d * (K - 1) + (K - 1) + src]!);
      }
      s[t * Di + d] = acc;
      u[t * Di + d] = silu(acc);
    }
  store(u);
  const proj = linear(u, T, Di, w.get(`${p}.x_proj.weight`)!, R + 2 * N);
  const slice = (from: number, len: number) => {
    const out = new Float64Array(T * len);
    for (let t = 0; t < T; t++) for (let i = 0; i < len; i++) out[t * len + i] = proj[t * (R + 2 * N) + from + i]!;
    return out;
  };
  const dtn = store(rmsnorm(slice(0, R), T, R, w.get(`${p}.dt_layernorm.weight`)!, eps));
  const B = store(rmsnorm(slice(R, N), T, N, w.get(`${p}.b_layernorm.weight`)!, eps));
  const C = store(rmsnorm(slice(R + N, N), T, N, w.get(`${p}.c_layernorm.weight`)!, eps));
  // dt_proj's output is stored; its bias is added where softplus is taken.
  const v = store(linear(dtn, T, R, w.get(`${p}.dt_proj.weight`)!, Di));
  const dtBias = w.get(`${p}.dt_proj.bias`)!;
  for (let t = 0; t < T; t++) for (let d = 0; d < Di; d++) v[t * Di + d] = v[t * Di + d]! + dtBias[d]!;
  const Alog = w.get(`${p}.A_log`)!, D = w.get(`${p}.D`)!;
  const y = new Float64Array(T * Di), pre = new Float64Array(T * Di);
  for (let d = 0; d < Di; d++) {
    const h = ssm0.slice(d * N, (d + 1) * N);
    for (let t = 0; t < T; t++) {
      const dl = softplus(v[t * Di + d]!), ut = u[t * Di + d]!;
      let acc = 0;
      for (let n = 0; n < N; n++) {
        h[n] = Math.exp(dl * -Math.exp(Alog[d * N + n]!)) * h[n]! + dl * B[t * N + n]! * ut;
        acc += h[n]! * C[t * N + n]!;
      }
      pre[t * Di + d] = acc + D[d]! * ut;
      y[t * Di + d] = pre[t * Di + d]! * silu(xz[t * 2 * Di + Di + d]!);
    }
  }
  tape.push({ kind: 'mamba', x, xz, s, u, proj, dtn, B, C, v, pre, conv0, ssm0 });
  return store(linear(store(y), T, Di, w.get(`${p}.out_proj.weight`)!, H, w.get(`${p}.out_proj.bias`)));
}

/** Experts chosen for one token: the top k of the router's probabilities, ties to the lower index. */
export function topK(probs: ArrayLike<number>, k: number): number[] {
  return Array.from(probs, (v, i) => [v, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k).map(([, i]) => i);
}

function moe(cfg: JambaConfig, w: Weights, p: string, x: Float64Array, T: number, routerOut: Float64Array[], store: Store,
  routing: number[][] | undefined, tape: MoeTape[]): Float64Array {
  const H = cfg.hiddenSize, E = cfg.numExperts, k = cfg.numExpertsPerTok;
  const logits = linear(x, T, H, w.get(`${p}.router.weight`)!, E);
  routerOut.push(logits);
  const out = new Float64Array(T * H), probs = new Float64Array(T * E);
  const chosen: number[][] = [];
  const experts = new Map<string, MlpTape>();
  for (let t = 0; t < T; t++) {
    const row = logits.subarray(t * E, (t + 1) * E);
    let m = -Infinity;
    for (const v of row) m = Math.max(m, v);
    let z = 0;
    for (let e = 0; e < E; e++) z += Math.exp(row[e]! - m);
    for (let e = 0; e < E; e++) probs[t * E + e] = Math.exp(row[e]! - m) / z;
    const pick = routing?.[t] ?? topK(probs.subarray(t * E, (t + 1) * E), k);
    chosen.push(pick);
    const xt = x.subarray(t * H, (t + 1) * H);
    for (const e of pick) {
      const et: MlpTape[] = [];
      const f = mlp(w, `${p}.experts.${e}`, xt, 1, H, cfg.intermediateSize, store, et);
      experts.set(`${t}.${e}`, et[0]!);
      const y = store(f.map((v) => probs[t * E + e]! * v));
      for (let c = 0; c < H; c++) out[t * H + c] = out[t * H + c]! + y[c]!;
    }
  }
  tape.push({ kind: 'moe', x, logits, probs, chosen, experts });
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
  const H = cfg.hiddenSize;
  const E = prefixEmbeds.length / H;
  const emb = w.get('model.embed_tokens.weight')!;
  const h = new Float64Array((E + ids.length) * H);
  h.set(Array.from(prefixEmbeds), 0);
  ids.forEach((id, t) => h.set(emb.subarray(id * H, (id + 1) * H), (E + t) * H));
  return referenceForwardRows(cfg, w, h, { store });
}

/** The forward pass over input rows (T × H: token embeddings or any vectors), from `initial` states. */
export function referenceForwardRows(cfg: JambaConfig, w: Weights, rows: Float64Array, opts: RowsOptions = {}): ReferenceOutputs {
  const H = cfg.hiddenSize, V = cfg.vocabSize, store = opts.store ?? exact;
  const T = rows.length / H;
  const h = rows.slice();
  const out: ReferenceOutputs = { embed: h.slice(), layers: [], router: new Map(), finalNorm: new Float64Array(), logits: new Float64Array() };
  for (let i = 0; i < (opts.layers ?? cfg.numHiddenLayers); i++) {
    const p = `model.layers.${i}`;
    const hIn = h.slice();
    const x1 = store(rmsnorm(h, T, H, w.get(`${p}.input_layernorm.weight`)!, cfg.rmsNormEps));
    const mixers: Array<LayerTape['mixer']> = [];
    let d = cfg.layerTypes[i] === 'attention'
      ? attention(cfg, w, `${p}.self_attn`, x1, T, store, opts.initial?.[i], mixers)
      : mamba(cfg, w, `${p}.mamba`, x1, T, store, opts.initial?.[i], mixers);
    for (let j = 0; j < h.length; j++) h[j] = h[j]! + d[j]!;
    const hMid = h.slice();
    const x2 = store(rmsnorm(h, T, H, w.get(`${p}.pre_ff_layernorm.weight`)!, cfg.rmsNormEps));
    let ff: LayerTape['ff'];
    if (cfg.layerNumExperts[i]! > 1) {
      const r: Float64Array[] = [], mt: MoeTape[] = [];
      d = moe(cfg, w, `${p}.feed_forward`, x2, T, r, store, opts.routing?.get(i), mt);
      out.router.set(i, r[0]!);
      ff = mt[0]!;
    } else {
      const mt: MlpTape[] = [];
      d = store(mlp(w, `${p}.feed_forward`, x2, T, H, cfg.intermediateSize, store, mt));
      ff = { kind: 'mlp', ...mt[0]! };
    }
    for (let j = 0; j < h.length; j++) h[j] = h[j]! + d[j]!;
    out.layers.push(h.slice());
    opts.tape?.push({ hIn, x1, mixer: mixers[0]!, hMid, x2, ff });
  }
  out.finalNorm = rmsnorm(h, T, H, w.get('model.final_layernorm.weight')!, cfg.rmsNormEps);
  const head = cfg.tieWordEmbeddings ? w.get('model.embed_tokens.weight')! : w.get('lm_head.weight')!;
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
