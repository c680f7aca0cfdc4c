/**
 * The float64 reference backward of the Jamba forward pass in reference-model.ts, with respect to
 * its inputs only (the weights are frozen): the input rows and the initial states (conv, SSM, and
 * an attention layer's K/V prefix). Plain loops over the chain rule, op by op, from the tape the
 * reference forward records; `gradcheck` holds it to central finite differences of that forward.
 * The native float32 backward (lib/grad.ts) is then held to this.
 */
import type { JambaConfig } from '../../lib/config';
import {
  AttentionTape, LayerTape, MambaTape, MlpTape, MoeTape, RefLayerState, RowsOptions, Weights, referenceForwardRows,
} from './reference-model';

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
const silu = (v: number) => v * sigmoid(v);
const dsilu = (v: number) => {
  const s = sigmoid(v);
  return s * (1 + v * (1 - s));
};
const softplus = (v: number) => (v <= 20 ? Math.log1p(Math.exp(v)) : v);
/** The derivative of softplus as the forward takes it (the identity above 20). */
const dsoftplus = (v: number) => (v <= 20 ? sigmoid(v) : 1);

/** dx = dy · W for y = x · Wᵀ (W is N × K). */
export function linearBack(dy: Float64Array, T: number, W: Float64Array, N: number, K: number): Float64Array {
  const dx = new Float64Array(T * K);
  for (let t = 0; t < T; t++)
    for (let n = 0; n < N; n++) {
      const g = dy[t * N + n]!;
      if (g === 0) continue;
      for (let k = 0; k < K; k++) dx[t * K + k] = dx[t * K + k]! + g * W[n * K + k]!;
    }
  return dx;
}

/** RMSNorm's backward over rows of `cols` (x with row stride `ld`, starting at column `from`). */
export function rmsnormBack(x: Float64Array, rows: number, cols: number, w: Float64Array, eps: number, dy: Float64Array, ld = cols, from = 0): Float64Array {
  const dx = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let ss = 0, dot = 0;
    for (let c = 0; c < cols; c++) {
      const xv = x[r * ld + from + c]!;
      ss += xv * xv;
      dot += xv * dy[r * cols + c]! * w[c]!;
    }
    const inv = 1 / Math.sqrt(ss / cols + eps);
    for (let c = 0; c < cols; c++) dx[r * cols + c] = inv * dy[r * cols + c]! * w[c]! - ((inv ** 3) / cols) * x[r * ld + from + c]! * dot;
  }
  return dx;
}

function mlpBack(w: Weights, p: string, t: MlpTape, dy: Float64Array, H: number, I: number): Float64Array {
  const da = linearBack(dy, t.T, w.get(`${p}.down_proj.weight`)!, H, I);
  const dg = new Float64Array(da.length), du = new Float64Array(da.length);
  for (let i = 0; i < da.length; i++) {
    dg[i] = da[i]! * t.u[i]! * dsilu(t.g[i]!);
    du[i] = da[i]! * silu(t.g[i]!);
  }
  const dx = linearBack(dg, t.T, w.get(`${p}.gate_proj.weight`)!, I, H);
  const dxu = linearBack(du, t.T, w.get(`${p}.up_proj.weight`)!, I, H);
  for (let i = 0; i < dx.length; i++) dx[i] = dx[i]! + dxu[i]!;
  return dx;
}

/** An expert's output f_e(x) for one token, from its tape. */
function mlpOut(w: Weights, p: string, t: MlpTape, H: number, I: number): Float64Array {
  const down = w.get(`${p}.down_proj.weight`)!, f = new Float64Array(H);
  for (let c = 0; c < H; c++) {
    let s = 0;
    for (let i = 0; i < I; i++) s += silu(t.g[i]!) * t.u[i]! * down[c * I + i]!;
    f[c] = s;
  }
  return f;
}

function moeBack(cfg: JambaConfig, w: Weights, p: string, t: MoeTape, dy: Float64Array, T: number): Float64Array {
  const H = cfg.hiddenSize, E = cfg.numExperts, I = cfg.intermediateSize;
  const dx = new Float64Array(T * H), dl = new Float64Array(T * E);
  for (let r = 0; r < T; r++) {
    const dyr = dy.subarray(r * H, (r + 1) * H);
    const gh = new Float64Array(E);
    for (const e of t.chosen[r]!) {
      const et = t.experts.get(`${r}.${e}`)!, pe = t.probs[r * E + e]!;
      const f = mlpOut(w, `${p}.experts.${e}`, et, H, I);
      for (let c = 0; c < H; c++) gh[e] = gh[e]! + dyr[c]! * f[c]!;
      const scaled = dyr.map((v) => v * pe);
      const g = mlpBack(w, `${p}.experts.${e}`, et, scaled, H, I);
      for (let c = 0; c < H; c++) dx[r * H + c] = dx[r * H + c]! + g[c]!;
    }
    // Through the softmax over every expert: unchosen experts' logits get a gradient too.
    let mean = 0;
    for (const e of t.chosen[r]!) mean += t.probs[r * E + e]! * gh[e]!;
    for (let j = 0; j < E; j++) dl[r * E + j] = t.probs[r * E + j]! * (gh[j]! - mean);
  }
  const dr = linearBack(dl, T, w.get(`${p}.router.weight`)!, E, H);
  for (let i = 0; i < dx.length; i++) dx[i] = dx[i]! + dr[i]!;
  return dx;
}

function attentionBack(cfg: JambaConfig, w: Weights, p: string, t: AttentionTape, dy: Float64Array, T: number, dInit: RefLayerState): Float64Array {
  const H = cfg.hiddenSize, nh = cfg.numAttentionHeads, kvh = cfg.numKeyValueHeads, hd = cfg.headDim, kvw = kvh * hd;
  const qw = nh * hd, scale = 1 / Math.sqrt(hd), past = t.past;
  const dout = linearBack(dy, T, w.get(`${p}.o_proj.weight`)!, H, qw);
  const dq = new Float64Array(T * qw), dk = new Float64Array((past + T) * kvw), dv = new Float64Array((past + T) * kvw);
  for (let h = 0; h < nh; h++) {
    const g = Math.floor(h / (nh / kvh));
    for (let r = 0; r < T; r++) {
      const P = t.probs[h]![r]!, n = P.length;
      const dP = new Float64Array(n);
      let D = 0;
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let e = 0; e < hd; e++) s += dout[r * qw + h * hd + e]! * t.v[j * kvw + g * hd + e]!;
        dP[j] = s;
        D += P[j]! * s;
      }
      for (let j = 0; j < n; j++) {
        const dS = P[j]! * (dP[j]! - D) * scale;
        for (let e = 0; e < hd; e++) {
          dq[r * qw + h * hd + e] = dq[r * qw + h * hd + e]! + dS * t.k[j * kvw + g * hd + e]!;
          dk[j * kvw + g * hd + e] = dk[j * kvw + g * hd + e]! + dS * t.q[r * qw + h * hd + e]!;
          dv[j * kvw + g * hd + e] = dv[j * kvw + g * hd + e]! + P[j]! * dout[r * qw + h * hd + e]!;
        }
      }
    }
  }
  dInit.k = dk.slice(0, past * kvw);
  dInit.v = dv.slice(0, past * kvw);
  const dx = linearBack(dq, T, w.get(`${p}.q_proj.weight`)!, qw, H);
  const dxk = linearBack(dk.slice(past * kvw), T, w.get(`${p}.k_proj.weight`)!, kvw, H);
  const dxv = linearBack(dv.slice(past * kvw), T, w.get(`${p}.v_proj.weight`)!, kvw, H);
  for (let i = 0; i < dx.length; i++) dx[i] = dx[i]! + dxk[i]! + dxv[i]!;
  return dx;
}

function mambaBack(cfg: JambaConfig, w: Weights, p: string, t: MambaTape, dout: Float64Array, T: number, dInit: RefLayerState): Float64Array {
  const H = cfg.hiddenSize, Di = cfg.mambaDInner, N = cfg.mambaDState, R = cfg.mambaDtRank, K = cfg.mambaDConv, P = R + 2 * N;
  const eps = cfg.rmsNormEps;
  const dy = linearBack(dout, T, w.get(`${p}.out_proj.weight`)!, H, Di);
  const Alog = w.get(`${p}.A_log`)!, D = w.get(`${p}.D`)!;
  const dxz = new Float64Array(T * 2 * Di), du = new Float64Array(T * Di), dvv = new Float64Array(T * Di);
  const dB = new Float64Array(T * N), dC = new Float64Array(T * N), dssm0 = new Float64Array(Di * N);
  for (let d = 0; d < Di; d++) {
    const A = Array.from({ length: N }, (_, n) => -Math.exp(Alog[d * N + n]!));
    // The states h_0 … h_{T-1} rebuilt from the initial state.
    const hs: Float64Array[] = [];
    let h = t.ssm0.slice(d * N, (d + 1) * N);
    for (let r = 0; r < T; r++) {
      const dl = softplus(t.v[r * Di + d]!);
      const next = new Float64Array(N);
      for (let n = 0; n < N; n++) next[n] = Math.exp(dl * A[n]!) * h[n]! + dl * t.B[r * N + n]! * t.u[r * Di + d]!;
      hs.push(next);
      h = next;
    }
    const G = new Float64Array(N);
    for (let r = T - 1; r >= 0; r--) {
      const vr = t.v[r * Di + d]!, dl = softplus(vr), ur = t.u[r * Di + d]!;
      const z = t.xz[r * 2 * Di + Di + d]!;
      const dpre = dy[r * Di + d]! * silu(z);
      dxz[r * 2 * Di + Di + d] = dy[r * Di + d]! * t.pre[r * Di + d]! * dsilu(z);
      du[r * Di + d] = du[r * Di + d]! + dpre * D[d]!;
      const prev = r > 0 ? hs[r - 1]! : t.ssm0.subarray(d * N, (d + 1) * N);
      let dDelta = 0;
      for (let n = 0; n < N; n++) {
        G[n] = G[n]! + t.C[r * N + n]! * dpre;
        dC[r * N + n] = dC[r * N + n]! + hs[r]![n]! * dpre;
        const a = Math.exp(dl * A[n]!);
        dDelta += G[n]! * (A[n]! * a * prev[n]! + t.B[r * N + n]! * ur);
        dB[r * N + n] = dB[r * N + n]! + G[n]! * dl * ur;
        du[r * Di + d] = du[r * Di + d]! + G[n]! * dl * t.B[r * N + n]!;
        G[n] = G[n]! * a;
      }
      dvv[r * Di + d] = dDelta * dsoftplus(vr);
    }
    dssm0.set(G, d * N);
  }
  dInit.ssm = dssm0;
  const ddtn = linearBack(dvv, T, w.get(`${p}.dt_proj.weight`)!, Di, R);
  const dproj = new Float64Array(T * P);
  const put = (g: Float64Array, from: number, len: number) => {
    for (let r = 0; r < T; r++) for (let i = 0; i < len; i++) dproj[r * P + from + i] = g[r * len + i]!;
  };
  put(rmsnormBack(t.proj, T, R, w.get(`${p}.dt_layernorm.weight`)!, eps, ddtn, P, 0), 0, R);
  put(rmsnormBack(t.proj, T, N, w.get(`${p}.b_layernorm.weight`)!, eps, dB, P, R), R, N);
  put(rmsnormBack(t.proj, T, N, w.get(`${p}.c_layernorm.weight`)!, eps, dC, P, R + N), R + N, N);
  const dux = linearBack(dproj, T, w.get(`${p}.x_proj.weight`)!, P, Di);
  const cw = w.get(`${p}.conv1d.weight`)!;
  const dconv0 = new Float64Array(Di * (K - 1));
  for (let r = 0; r < T; r++)
    for (let d = 0; d < Di; d++) {
      const ds = (du[r * Di + d]! + dux[r * Di + d]!) * dsilu(t.s[r * Di + d]!);
      for (let j = 0; j < K; j++) {
        const src = r - (K - 1) + j;
        if (src >= 0) dxz[src * 2 * Di + d] = dxz[src * 2 * Di + d]! + cw[d * K + j]! * ds;
        else dconv0[d * (K - 1) + (K - 1) + src] = dconv0[d * (K - 1) + (K - 1) + src]! + cw[d * K + j]! * ds;
      }
    }
  dInit.conv = dconv0;
  return linearBack(dxz, T, w.get(`${p}.in_proj.weight`)!, 2 * Di, H);
}

export interface RefGradOptions extends RowsOptions {
  /** Cross-entropy targets: rows (positions in `rows`) predict `ids`, weighted (default 1). */
  targets?: { rows: number[]; ids: number[]; weights?: number[] };
  /** The loss is Σ w·CE / `denom` (default Σ w; 1 for a sum). */
  denom?: number;
  /** A cotangent on the final hidden states (after the final norm), T × H, added to the loss's. */
  dHidden?: Float64Array;
}

export interface RefGrad {
  loss: number;
  /** The gradient with respect to each input row, T × H. */
  dRows: Float64Array;
  /** Per layer: conv and ssm (Mamba) or k and v (attention, the prefix's positions). */
  dInitial: RefLayerState[];
  /** The final hidden states (after the final norm). */
  hidden: Float64Array;
  logits: Float64Array;
  tape: LayerTape[];
}

/** The loss and its gradient with respect to the input rows and initial states, in float64. */
export function referenceGrad(cfg: JambaConfig, w: Weights, rows: Float64Array, opts: RefGradOptions = {}): RefGrad {
  const H = cfg.hiddenSize, V = cfg.vocabSize, T = rows.length / H, eps = cfg.rmsNormEps;
  const tape: LayerTape[] = [];
  const out = referenceForwardRows(cfg, w, rows, { ...opts, tape });
  const hFinal = out.layers.length ? out.layers[out.layers.length - 1]! : rows;
  const { loss, dlogits } = crossEntropy(out.logits, T, V, opts);
  const head = cfg.tieWordEmbeddings ? w.get('model.embed_tokens.weight')! : w.get('lm_head.weight')!;
  const dxf = linearBack(dlogits, T, head, V, H);
  if (opts.dHidden) for (let i = 0; i < dxf.length; i++) dxf[i] = dxf[i]! + opts.dHidden[i]!;
  // An early exit (opts.layers): dHidden is the cotangent on the residual stream there.
  let dh = opts.layers !== undefined ? (opts.dHidden ?? new Float64Array(T * H)).slice() : rmsnormBack(hFinal, T, H, w.get('model.final_layernorm.weight')!, eps, dxf);
  const dInitial: RefLayerState[] = tape.map(() => ({}));
  for (let i = tape.length - 1; i >= 0; i--) {
    const p = `model.layers.${i}`, lt = tape[i]!;
    const dx2 = lt.ff.kind === 'moe' ? moeBack(cfg, w, `${p}.feed_forward`, lt.ff, dh, T) : mlpBack(w, `${p}.feed_forward`, lt.ff, dh, H, cfg.intermediateSize);
    const dMid = rmsnormBack(lt.hMid, T, H, w.get(`${p}.pre_ff_layernorm.weight`)!, eps, dx2);
    for (let j = 0; j < dh.length; j++) dMid[j] = dMid[j]! + dh[j]!;
    const dx1 = lt.mixer.kind === 'attention'
      ? attentionBack(cfg, w, `${p}.self_attn`, lt.mixer, dMid, T, dInitial[i]!)
      : mambaBack(cfg, w, `${p}.mamba`, lt.mixer, dMid, T, dInitial[i]!);
    dh = rmsnormBack(lt.hIn, T, H, w.get(`${p}.input_layernorm.weight`)!, eps, dx1);
    for (let j = 0; j < dh.length; j++) dh[j] = dh[j]! + dMid[j]!;
  }
  return { loss, dRows: dh, dInitial, hidden: opts.layers !== undefined ? hFinal : out.finalNorm, logits: out.logits, tape };
}

/** Σ w·(logsumexp(z) − z[id]) / denom over the targets, and its gradient with respect to the logits. */
function crossEntropy(logits: Float64Array, T: number, V: number, opts: RefGradOptions): { loss: number; dlogits: Float64Array } {
  const t = opts.targets ?? { rows: [], ids: [] };
  const weights = t.weights ?? t.rows.map(() => 1);
  const denom = opts.denom ?? weights.reduce((a, b) => a + b, 0);
  const dlogits = new Float64Array(T * V);
  let loss = 0;
  t.rows.forEach((r, i) => {
    const z = logits.subarray(r * V, (r + 1) * V);
    let m = -Infinity;
    for (const v of z) m = Math.max(m, v);
    let s = 0;
    for (const v of z) s += Math.exp(v - m);
    const lse = m + Math.log(s), wi = weights[i]! / denom;
    loss += wi * (lse - z[t.ids[i]!]!);
    for (let c = 0; c < V; c++) dlogits[r * V + c] = dlogits[r * V + c]! + wi * Math.exp(z[c]! - lse);
    dlogits[r * V + t.ids[i]!] = dlogits[r * V + t.ids[i]!]! - wi;
  });
  return { loss, dlogits };
}

/** The loss alone, as referenceGrad computes it (for finite differences): the targets' CE plus ⟨dHidden, hidden⟩. */
export function referenceLoss(cfg: JambaConfig, w: Weights, rows: Float64Array, opts: RefGradOptions = {}): number {
  const out = referenceForwardRows(cfg, w, rows, opts);
  let loss = crossEntropy(out.logits, rows.length / cfg.hiddenSize, cfg.vocabSize, opts).loss;
  const hidden = opts.layers !== undefined ? (out.layers[out.layers.length - 1] ?? rows) : out.finalNorm;
  if (opts.dHidden) for (let i = 0; i < hidden.length; i++) loss += opts.dHidden[i]! * hidden[i]!;
  return loss;
}

/** The smallest gap between the k-th and (k+1)-th router logit of any token and MoE layer (a routing near-tie when small). */
export function routerMargin(tape: LayerTape[], E: number, k: number): number {
  let min = Infinity;
  for (const lt of tape) {
    if (lt.ff.kind !== 'moe') continue;
    const { logits } = lt.ff;
    for (let r = 0; r < logits.length / E; r++) {
      const row = Array.from(logits.subarray(r * E, (r + 1) * E)).sort((a, b) => b - a);
      if (k < E) min = Math.min(min, row[k - 1]! - row[k]!);
    }
  }
  return min;
}
