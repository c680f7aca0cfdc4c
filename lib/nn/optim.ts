/**
 * Optimizers over `Param`s (lib/nn/layers.ts): Adam and AdamW (decoupled weight decay, as
 * PyTorch's), with optional gradient-norm clipping; state that saves and restores exactly, so a
 * resumed run continues as if it had not stopped. And `gradcheck`, finite differences.
 */
import { InvalidArgumentError } from '../errors';
import type { Param } from './layers';

export interface AdamOptions {
  /** A constant rate, or one per step (1-based). */
  lr: number | ((step: number) => number);
  betas?: [number, number];
  eps?: number;
  /** AdamW's decoupled weight decay (default 0: plain Adam). */
  weightDecay?: number;
  /** Scale the gradients down to this global L2 norm before the step. */
  clipGradNorm?: number;
}

export interface Optimizer {
  /** One update from the parameters' `grad`; returns the gradient norm before clipping. */
  step(): number;
  zeroGrad(): void;
  /** Steps taken. */
  readonly steps: number;
  /** The optimizer's state (step count, moments), to save with a checkpoint. */
  state(): { step: number; moments: Record<string, { m: Float64Array; v: Float64Array }> };
  loadState(s: { step: number; moments: Record<string, { m: ArrayLike<number>; v: ArrayLike<number> }> }): void;
}

/** The global L2 norm of the parameters' gradients. */
export function gradNorm(params: Param[]): number {
  let s = 0;
  for (const p of params) for (const g of p.grad) s += g * g;
  return Math.sqrt(s);
}

export function adam(params: Param[], o: AdamOptions): Optimizer {
  const [b1, b2] = o.betas ?? [0.9, 0.999];
  const eps = o.eps ?? 1e-8, wd = o.weightDecay ?? 0;
  if (typeof o.lr !== 'function' && !(o.lr > 0)) throw new InvalidArgumentError('lr must be a positive number or a function of the step');
  if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw new InvalidArgumentError('betas must be in [0, 1)');
  if (!(wd >= 0)) throw new InvalidArgumentError('weightDecay must be ≥ 0');
  if (o.clipGradNorm !== undefined && !(o.clipGradNorm > 0)) throw new InvalidArgumentError('clipGradNorm must be positive');
  const names = new Set<string>();
  for (const p of params) {
    if (names.has(p.name)) throw new InvalidArgumentError(`two parameters are named '${p.name}'`);
    names.add(p.name);
  }
  const m = params.map((p) => new Float64Array(p.value.length)), v = params.map((p) => new Float64Array(p.value.length));
  let t = 0;
  return {
    get steps() {
      return t;
    },
    step() {
      const norm = gradNorm(params);
      if (!Number.isFinite(norm)) throw new InvalidArgumentError('a gradient is not finite; the step was not taken');
      const clip = o.clipGradNorm !== undefined && norm > o.clipGradNorm ? o.clipGradNorm / norm : 1;
      t++;
      const lr = typeof o.lr === 'function' ? o.lr(t) : o.lr;
      const c1 = 1 - b1 ** t, c2 = 1 - b2 ** t;
      params.forEach((p, i) => {
        const mi = m[i]!, vi = v[i]!;
        for (let j = 0; j < p.value.length; j++) {
          const g = p.grad[j]! * clip;
          mi[j] = b1 * mi[j]! + (1 - b1) * g;
          vi[j] = b2 * vi[j]! + (1 - b2) * g * g;
          if (wd) p.value[j] = p.value[j]! * (1 - lr * wd);
          p.value[j] = p.value[j]! - (lr * (mi[j]! / c1)) / (Math.sqrt(vi[j]! / c2) + eps);
        }
      });
      return norm;
    },
    zeroGrad() {
      for (const p of params) p.grad.fill(0);
    },
    state() {
      return { step: t, moments: Object.fromEntries(params.map((p, i) => [p.name, { m: m[i]!.slice(), v: v[i]!.slice() }])) };
    },
    loadState(s) {
      params.forEach((p, i) => {
        const mo = s.moments[p.name];
        if (!mo || mo.m.length !== p.value.length || mo.v.length !== p.value.length)
          throw new InvalidArgumentError(`optimizer state: no moments of the right size for '${p.name}'`);
        m[i]!.set(Array.from(mo.m));
        v[i]!.set(Array.from(mo.v));
      });
      t = s.step;
    },
  };
}

/**
 * Finite differences of `f` at `x` against the analytic gradient `g`, on `samples` coordinates
 * (all by default), with the five-point central stencil (error O(eps⁴), so one step size serves
 * both smooth and curved functions): the largest relative error |fd − g| / max(|fd|, |g|, floor),
 * and the coordinate where it is.
 */
export function gradcheck(f: (x: Float64Array) => number, x: Float64Array, g: ArrayLike<number>,
                          o: { eps?: number; samples?: number; seed?: number; floor?: number } = {}): { maxRel: number; worst: number } {
  const eps = o.eps ?? 1e-4, floor = o.floor ?? 1e-8;
  let idx = Array.from(x.keys());
  if (o.samples !== undefined && o.samples < idx.length) {
    let s = (o.seed ?? 1) >>> 0;
    idx = idx.map((i) => [((s = (Math.imul(s, 1664525) + 1013904223) >>> 0)), i] as const).sort((a, b) => a[0] - b[0]).slice(0, o.samples).map(([, i]) => i);
  }
  const at = (i: number, x0: number, d: number) => {
    x[i] = x0 + d;
    return f(x);
  };
  let maxRel = 0, worst = -1;
  for (const i of idx) {
    const x0 = x[i]!;
    const fd = (8 * (at(i, x0, eps) - at(i, x0, -eps)) - (at(i, x0, 2 * eps) - at(i, x0, -2 * eps))) / (12 * eps);
    x[i] = x0;
    const rel = Math.abs(fd - g[i]!) / Math.max(Math.abs(fd), Math.abs(g[i]!), floor);
    if (rel > maxRel) [maxRel, worst] = [rel, i];
  }
  return { maxRel, worst };
}
