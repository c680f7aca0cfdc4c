/**
 * A small set of trainable layers for what sits in front of or between passes of the frozen model
 * (prompt generators, connectors): float64 rows, hand-written forward and backward, each checked
 * against finite differences (test/nn.test.ts). A module's `forward` returns its output and a
 * `back` closure that takes ∂L/∂y, adds into every parameter's `grad`, and returns ∂L/∂x.
 */
import { InvalidArgumentError } from '../errors';

/** Rows of `cols` values, row-major. */
export interface Rows {
  data: Float64Array;
  rows: number;
  cols: number;
}

export interface Param {
  name: string;
  value: Float64Array;
  grad: Float64Array;
  shape: number[];
}

export interface Module {
  readonly params: Param[];
  forward(x: Rows): { y: Rows; back: (dy: Rows) => Rows };
}

export type Activation = 'silu' | 'relu' | 'tanh' | 'gelu';

export const rows = (data: Float64Array, n: number, cols: number): Rows => {
  if (data.length !== n * cols) throw new InvalidArgumentError(`rows: ${data.length} values are not ${n} × ${cols}`);
  return { data, rows: n, cols };
};

/** A seeded generator (mulberry32) for initial values, so a seed reproduces a run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A standard normal draw (Box–Muller). */
export function normal(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

function param(name: string, shape: number[], value?: Float64Array): Param {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, shape, value: value ?? new Float64Array(n), grad: new Float64Array(n) };
}

function checkInput(x: Rows, cols: number, what: string): void {
  if (x.cols !== cols || x.data.length !== x.rows * cols) throw new InvalidArgumentError(`${what}: expected rows of ${cols}, got ${x.rows} × ${x.cols}`);
}

/** y = x·Wᵀ (x: n × k, W: m × k), into out (n × m). */
function matmulT(x: Float64Array, n: number, k: number, w: Float64Array, m: number): Float64Array {
  const out = new Float64Array(n * m);
  for (let r = 0; r < n; r++)
    for (let c = 0; c < m; c++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += x[r * k + j]! * w[c * k + j]!;
      out[r * m + c] = s;
    }
  return out;
}

/** dX = dY·W and dW += dYᵀ·X for y = x·Wᵀ. */
function matmulTBack(dy: Float64Array, x: Float64Array, n: number, k: number, w: Param, m: number): Float64Array {
  const dx = new Float64Array(n * k);
  for (let r = 0; r < n; r++)
    for (let c = 0; c < m; c++) {
      const g = dy[r * m + c]!;
      if (g === 0) continue;
      for (let j = 0; j < k; j++) {
        dx[r * k + j] = dx[r * k + j]! + g * w.value[c * k + j]!;
        w.grad[c * k + j] = w.grad[c * k + j]! + g * x[r * k + j]!;
      }
    }
  return dx;
}

export interface LinearOptions {
  bias?: boolean;
  /** 'xavier' (default): uniform ±√(6 / (in + out)); 'zero'; or a normal with this standard deviation. */
  init?: 'xavier' | 'zero' | { std: number };
  seed?: number;
  name?: string;
}

/** y = x·Wᵀ + b, W: out × in. */
export function linear(inF: number, outF: number, o: LinearOptions = {}): Module {
  const name = o.name ?? 'linear';
  const rand = seeded(o.seed ?? 1);
  const w = param(`${name}.weight`, [outF, inF]);
  const init = o.init ?? 'xavier';
  if (init === 'xavier') {
    const a = Math.sqrt(6 / (inF + outF));
    for (let i = 0; i < w.value.length; i++) w.value[i] = (rand() * 2 - 1) * a;
  } else if (init !== 'zero') {
    for (let i = 0; i < w.value.length; i++) w.value[i] = normal(rand) * init.std;
  }
  const b = o.bias === false ? null : param(`${name}.bias`, [outF]);
  return {
    params: b ? [w, b] : [w],
    forward(x) {
      checkInput(x, inF, name);
      const y = matmulT(x.data, x.rows, inF, w.value, outF);
      if (b) for (let r = 0; r < x.rows; r++) for (let c = 0; c < outF; c++) y[r * outF + c] = y[r * outF + c]! + b.value[c]!;
      return {
        y: rows(y, x.rows, outF),
        back(dy) {
          if (b) for (let r = 0; r < x.rows; r++) for (let c = 0; c < outF; c++) b.grad[c] = b.grad[c]! + dy.data[r * outF + c]!;
          return rows(matmulTBack(dy.data, x.data, x.rows, inF, w, outF), x.rows, inF);
        },
      };
    },
  };
}

/** RMSNorm over each row, with a learned scale (starting at 1). */
export function rmsNorm(dim: number, o: { eps?: number; name?: string } = {}): Module {
  const eps = o.eps ?? 1e-6, name = o.name ?? 'norm';
  const w = param(`${name}.weight`, [dim], new Float64Array(dim).fill(1));
  return {
    params: [w],
    forward(x) {
      checkInput(x, dim, name);
      const inv = new Float64Array(x.rows), y = new Float64Array(x.data.length);
      for (let r = 0; r < x.rows; r++) {
        let ss = 0;
        for (let c = 0; c < dim; c++) ss += x.data[r * dim + c]! ** 2;
        inv[r] = 1 / Math.sqrt(ss / dim + eps);
        for (let c = 0; c < dim; c++) y[r * dim + c] = x.data[r * dim + c]! * inv[r]! * w.value[c]!;
      }
      return {
        y: rows(y, x.rows, dim),
        back(dy) {
          const dx = new Float64Array(x.data.length);
          for (let r = 0; r < x.rows; r++) {
            let dot = 0;
            for (let c = 0; c < dim; c++) {
              const xv = x.data[r * dim + c]!, g = dy.data[r * dim + c]!;
              dot += xv * g * w.value[c]!;
              w.grad[c] = w.grad[c]! + g * xv * inv[r]!;
            }
            for (let c = 0; c < dim; c++)
              dx[r * dim + c] = inv[r]! * dy.data[r * dim + c]! * w.value[c]! - (inv[r]! ** 3 / dim) * x.data[r * dim + c]! * dot;
          }
          return rows(dx, x.rows, dim);
        },
      };
    },
  };
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
const GELU_C = Math.sqrt(2 / Math.PI);
const ACTIVATIONS: Record<Activation, [f: (v: number) => number, df: (v: number) => number]> = {
  silu: [(v) => v * sigmoid(v), (v) => sigmoid(v) * (1 + v * (1 - sigmoid(v)))],
  relu: [(v) => (v > 0 ? v : 0), (v) => (v > 0 ? 1 : 0)],
  tanh: [Math.tanh, (v) => 1 - Math.tanh(v) ** 2],
  // The tanh approximation, as GPT-2 and most PyTorch checkpoints use.
  gelu: [
    (v) => 0.5 * v * (1 + Math.tanh(GELU_C * (v + 0.044715 * v ** 3))),
    (v) => {
      const u = GELU_C * (v + 0.044715 * v ** 3), t = Math.tanh(u);
      return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * v * v);
    },
  ],
};

export function activation(kind: Activation): Module {
  const fns = ACTIVATIONS[kind];
  if (!fns) throw new InvalidArgumentError(`activation must be one of ${Object.keys(ACTIVATIONS).join(', ')}`);
  const [f, df] = fns;
  return {
    params: [],
    forward(x) {
      return {
        y: rows(x.data.map(f), x.rows, x.cols),
        back: (dy) => rows(dy.data.map((g, i) => g * df(x.data[i]!)), x.rows, x.cols),
      };
    },
  };
}

/** Modules in order; the backward runs them in reverse. */
export function sequential(...modules: Module[]): Module {
  return {
    params: modules.flatMap((m) => m.params),
    forward(x) {
      const backs: Array<(dy: Rows) => Rows> = [];
      let y = x;
      for (const m of modules) {
        const r = m.forward(y);
        backs.push(r.back);
        y = r.y;
      }
      return { y, back: (dy) => backs.reduceRight((g, back) => back(g), dy) };
    },
  };
}

/** linear → activation → linear. */
export function mlp(inF: number, hidden: number, outF: number, o: { activation?: Activation; bias?: boolean; seed?: number; name?: string } = {}): Module {
  const name = o.name ?? 'mlp', seed = o.seed ?? 1;
  return sequential(
    linear(inF, hidden, { bias: o.bias ?? true, seed, name: `${name}.fc1` }),
    activation(o.activation ?? 'silu'),
    linear(hidden, outF, { bias: o.bias ?? true, seed: seed + 1, name: `${name}.fc2` }),
  );
}

/** down(silu(gate(x)) ⊙ up(x)), as Jamba's own feed-forward (no biases). */
export function swigluMlp(dim: number, hidden: number, o: { outDim?: number; seed?: number; name?: string; zeroOutput?: boolean } = {}): Module {
  const name = o.name ?? 'swiglu', seed = o.seed ?? 1;
  const gate = linear(dim, hidden, { bias: false, seed, name: `${name}.gate_proj` });
  const up = linear(dim, hidden, { bias: false, seed: seed + 1, name: `${name}.up_proj` });
  const down = linear(hidden, o.outDim ?? dim, { bias: false, seed: seed + 2, name: `${name}.down_proj`, init: o.zeroOutput ? 'zero' : 'xavier' });
  const [f, df] = ACTIVATIONS.silu;
  return {
    params: [...gate.params, ...up.params, ...down.params],
    forward(x) {
      const g = gate.forward(x), u = up.forward(x);
      const a = new Float64Array(g.y.data.length);
      for (let i = 0; i < a.length; i++) a[i] = f(g.y.data[i]!) * u.y.data[i]!;
      const d = down.forward(rows(a, x.rows, hidden));
      return {
        y: d.y,
        back(dy) {
          const da = d.back(dy).data;
          const dg = new Float64Array(a.length), du = new Float64Array(a.length);
          for (let i = 0; i < a.length; i++) {
            dg[i] = da[i]! * u.y.data[i]! * df(g.y.data[i]!);
            du[i] = da[i]! * f(g.y.data[i]!);
          }
          const dx = g.back(rows(dg, x.rows, hidden)).data, dxu = u.back(rows(du, x.rows, hidden)).data;
          for (let i = 0; i < dx.length; i++) dx[i] = dx[i]! + dxu[i]!;
          return rows(dx, x.rows, dim);
        },
      };
    },
  };
}

/**
 * Multi-head attention of `queries` over `keys` rows (q: nq × dim from the queries, k and v from
 * the keys), with an optional causal mask (query i sees keys ≤ i). Returns nq × dim after W_o.
 */
function attend(dim: number, heads: number, wq: Module, wk: Module, wv: Module, wo: Module, causal: boolean) {
  if (dim % heads !== 0) throw new InvalidArgumentError(`attention: ${dim} is not a multiple of ${heads} heads`);
  const hd = dim / heads, scale = 1 / Math.sqrt(hd);
  return (qIn: Rows, kvIn: Rows) => {
    const q = wq.forward(qIn), k = wk.forward(kvIn), v = wv.forward(kvIn);
    const nq = qIn.rows, nk = kvIn.rows;
    const P = new Float64Array(heads * nq * nk), o = new Float64Array(nq * dim);
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < nq; i++) {
        const row = P.subarray((h * nq + i) * nk, (h * nq + i + 1) * nk);
        const last = causal ? Math.min(i, nk - 1) : nk - 1;
        let m = -Infinity;
        for (let j = 0; j <= last; j++) {
          let s = 0;
          for (let e = 0; e < hd; e++) s += q.y.data[i * dim + h * hd + e]! * k.y.data[j * dim + h * hd + e]!;
          row[j] = s * scale;
          m = Math.max(m, row[j]!);
        }
        let z = 0;
        for (let j = 0; j <= last; j++) z += (row[j] = Math.exp(row[j]! - m));
        for (let j = 0; j <= last; j++) row[j] = row[j]! / z;
        for (let e = 0; e < hd; e++) {
          let s = 0;
          for (let j = 0; j <= last; j++) s += row[j]! * v.y.data[j * dim + h * hd + e]!;
          o[i * dim + h * hd + e] = s;
        }
      }
    const out = wo.forward(rows(o, nq, dim));
    return {
      y: out.y,
      /** ∂L/∂(query input) and ∂L/∂(key-value input). */
      back(dy: Rows): [Rows, Rows] {
        const dO = out.back(dy).data;
        const dq = new Float64Array(nq * dim), dk = new Float64Array(nk * dim), dv = new Float64Array(nk * dim);
        for (let h = 0; h < heads; h++)
          for (let i = 0; i < nq; i++) {
            const row = P.subarray((h * nq + i) * nk, (h * nq + i + 1) * nk);
            const last = causal ? Math.min(i, nk - 1) : nk - 1;
            const dP = new Float64Array(last + 1);
            let D = 0;
            for (let j = 0; j <= last; j++) {
              let s = 0;
              for (let e = 0; e < hd; e++) s += dO[i * dim + h * hd + e]! * v.y.data[j * dim + h * hd + e]!;
              dP[j] = s;
              D += row[j]! * s;
            }
            for (let j = 0; j <= last; j++) {
              const dS = row[j]! * (dP[j]! - D) * scale;
              for (let e = 0; e < hd; e++) {
                dq[i * dim + h * hd + e] = dq[i * dim + h * hd + e]! + dS * k.y.data[j * dim + h * hd + e]!;
                dk[j * dim + h * hd + e] = dk[j * dim + h * hd + e]! + dS * q.y.data[i * dim + h * hd + e]!;
                dv[j * dim + h * hd + e] = dv[j * dim + h * hd + e]! + row[j]! * dO[i * dim + h * hd + e]!;
              }
            }
          }
        const dxq = q.back(rows(dq, nq, dim));
        const dxk = k.back(rows(dk, nk, dim)).data, dxv = v.back(rows(dv, nk, dim)).data;
        for (let i = 0; i < dxk.length; i++) dxk[i] = dxk[i]! + dxv[i]!;
        return [dxq, rows(dxk, nk, kvIn.cols)];
      },
    };
  };
}

/** `queries` learned query vectors attend over the input rows: any number of rows in, `queries` rows out. */
export function attentionPool(dim: number, queries: number, heads: number, o: { seed?: number; name?: string; outDim?: number } = {}): Module {
  const name = o.name ?? 'pool', seed = o.seed ?? 1, rand = seeded(seed + 7);
  const qv = param(`${name}.queries`, [queries, dim], Float64Array.from({ length: queries * dim }, () => normal(rand) * 0.02));
  const lin = (n: string, s: number, out = dim) => linear(dim, out, { bias: false, seed: seed + s, name: `${name}.${n}` });
  const wq = lin('q_proj', 1), wk = lin('k_proj', 2), wv = lin('v_proj', 3), wo = linear(dim, o.outDim ?? dim, { bias: false, seed: seed + 4, name: `${name}.o_proj` });
  const run = attend(dim, heads, wq, wk, wv, wo, false);
  return {
    params: [qv, ...wq.params, ...wk.params, ...wv.params, ...wo.params],
    forward(x) {
      checkInput(x, dim, name);
      const r = run(rows(qv.value, queries, dim), x);
      return {
        y: r.y,
        back(dy) {
          const [dq, dx] = r.back(dy);
          for (let i = 0; i < qv.grad.length; i++) qv.grad[i] = qv.grad[i]! + dq.data[i]!;
          return dx;
        },
      };
    },
  };
}

/** A pre-norm transformer layer: x + attention(norm(x)), then + swiglu(norm(·)). Causal by default. */
export function transformerLayer(dim: number, heads: number, ffHidden: number, o: { causal?: boolean; seed?: number; name?: string } = {}): Module {
  const name = o.name ?? 'layer', seed = o.seed ?? 1;
  const n1 = rmsNorm(dim, { name: `${name}.input_layernorm` }), n2 = rmsNorm(dim, { name: `${name}.post_attention_layernorm` });
  const lin = (n: string, s: number) => linear(dim, dim, { bias: false, seed: seed + s, name: `${name}.self_attn.${n}` });
  const wq = lin('q_proj', 1), wk = lin('k_proj', 2), wv = lin('v_proj', 3), wo = lin('o_proj', 4);
  const ff = swigluMlp(dim, ffHidden, { seed: seed + 5, name: `${name}.mlp` });
  const run = attend(dim, heads, wq, wk, wv, wo, o.causal ?? true);
  return {
    params: [...n1.params, ...wq.params, ...wk.params, ...wv.params, ...wo.params, ...n2.params, ...ff.params],
    forward(x) {
      checkInput(x, dim, name);
      const a = n1.forward(x);
      const at = run(a.y, a.y);
      const h = x.data.map((v, i) => v + at.y.data[i]!);
      const b = n2.forward(rows(h, x.rows, dim));
      const f = ff.forward(b.y);
      return {
        y: rows(h.map((v, i) => v + f.y.data[i]!), x.rows, dim),
        back(dy) {
          const dh = b.back(f.back(dy)).data.map((v, i) => v + dy.data[i]!);
          const [dq, dkv] = at.back(rows(dh, x.rows, dim));
          const da = dq.data.map((v, i) => v + dkv.data[i]!);
          const dx = a.back(rows(da, x.rows, dim)).data;
          return rows(dx.map((v, i) => v + dh[i]!), x.rows, dim);
        },
      };
    },
  };
}
