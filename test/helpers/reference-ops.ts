/** Float64 one-line-per-formula versions of each CPU kernel, for test/kernels.test.ts. */

export function gemmRef(x: ArrayLike<number>, m: number, w: ArrayLike<number>, n: number, k: number, bias?: ArrayLike<number>): Float64Array {
  const out = new Float64Array(m * n);
  for (let r = 0; r < m; r++)
    for (let c = 0; c < n; c++) {
      let s = bias ? bias[c]! : 0;
      for (let j = 0; j < k; j++) s += x[r * k + j]! * w[c * k + j]!;
      out[r * n + c] = s;
    }
  return out;
}

export function rmsnormRef(x: ArrayLike<number>, rows: number, cols: number, w: ArrayLike<number>, eps: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < cols; c++) ss += x[r * cols + c]! ** 2;
    const inv = 1 / Math.sqrt(ss / cols + eps);
    for (let c = 0; c < cols; c++) out[r * cols + c] = x[r * cols + c]! * inv * w[c]!;
  }
  return out;
}

const silu = (v: number) => v / (1 + Math.exp(-v));

/** Causal depthwise conv + SiLU over the whole history (zeros before t = 0). */
export function conv1dRef(x: ArrayLike<number>, T: number, C: number, w: ArrayLike<number>, width: number, bias: ArrayLike<number> | null): Float64Array {
  const out = new Float64Array(T * C);
  for (let t = 0; t < T; t++)
    for (let c = 0; c < C; c++) {
      let s = bias ? bias[c]! : 0;
      for (let j = 0; j < width; j++) {
        const src = t - (width - 1) + j;
        if (src >= 0) s += w[c * width + j]! * x[src * C + c]!;
      }
      out[t * C + c] = silu(s);
    }
  return out;
}

export interface ScanInputs {
  u: Float32Array; dt: Float32Array; b: Float32Array; c: Float32Array; z: Float32Array;
  a: Float32Array; d: Float32Array; dtBias: Float32Array; T: number; Di: number; N: number;
}

export function scanRef(s: ScanInputs, state0?: ArrayLike<number>): { y: Float64Array; state: Float64Array } {
  const { T, Di, N } = s;
  const y = new Float64Array(T * Di);
  const state = new Float64Array(Di * N);
  if (state0) for (let i = 0; i < Di * N; i++) state[i] = state0[i]!;
  for (let d = 0; d < Di; d++)
    for (let t = 0; t < T; t++) {
      const v = s.dt[t * Di + d]! + s.dtBias[d]!;
      const delta = v <= 20 ? Math.log1p(Math.exp(v)) : v;
      const u = s.u[t * Di + d]!;
      let acc = 0;
      for (let n = 0; n < N; n++) {
        const h = Math.exp(delta * s.a[d * N + n]!) * state[d * N + n]! + delta * s.b[t * N + n]! * u;
        state[d * N + n] = h;
        acc += h * s.c[t * N + n]!;
      }
      y[t * Di + d] = (acc + s.d[d]! * u) * silu(s.z[t * Di + d]!);
    }
  return { y, state };
}

/** Causal GQA attention with explicit softmax over all visible keys. */
export function attentionRef(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, T: number, past: number,
  heads: number, kvHeads: number, hd: number): Float64Array {
  const out = new Float64Array(T * heads * hd);
  for (let h = 0; h < heads; h++) {
    const g = Math.floor(h / (heads / kvHeads));
    for (let t = 0; t < T; t++) {
      const n = past + t + 1;
      const s = new Float64Array(n);
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let e = 0; e < hd; e++) dot += q[t * heads * hd + h * hd + e]! * k[j * kvHeads * hd + g * hd + e]!;
        s[j] = dot / Math.sqrt(hd);
      }
      const m = Math.max(...s);
      let z = 0;
      for (let j = 0; j < n; j++) z += Math.exp(s[j]! - m);
      for (let e = 0; e < hd; e++) {
        let acc = 0;
        for (let j = 0; j < n; j++) acc += (Math.exp(s[j]! - m) / z) * v[j * kvHeads * hd + g * hd + e]!;
        out[t * heads * hd + h * hd + e] = acc;
      }
    }
  }
  return out;
}

/** Relative error ‖a − b‖ / ‖b‖. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num) / Math.sqrt(den);
}

/** The parts one after another, in float64 (gradients of several segments or layers as one vector). */
export function concatF64(parts: ArrayLike<number>[]): Float64Array {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(Array.from(p), o);
    o += p.length;
  }
  return out;
}
