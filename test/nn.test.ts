/**
 * The trainable layers of lib/nn against central finite differences (float64, relative error
 * ≤ 1e-6 on inputs and every parameter), Adam/AdamW against their update rule, clipping, and the
 * optimizer's state round trip.
 */
import { InvalidArgumentError } from '../lib';
import {
  Module, Param, Rows, activation, adam, attentionPool, gradcheck, linear, mlp, rmsNorm, rows, seeded, sequential, swigluMlp, transformerLayer,
} from '../lib/nn';

/** L = ⟨y, R⟩ for a fixed random R: its gradient with respect to y is R. */
function checkModule(name: string, m: Module, x: Rows) {
  const rand = seeded(99);
  const y0 = m.forward(x).y;
  const R = Float64Array.from({ length: y0.data.length }, () => rand() - 0.5);
  const loss = () => {
    const y = m.forward(x).y.data;
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i]! * R[i]!;
    return s;
  };
  for (const p of m.params) p.grad.fill(0);
  const out = m.forward(x);
  const dx = out.back(rows(R.slice(), y0.rows, y0.cols));
  // Relative error per coordinate, on coordinates of at least 1e-3 of the largest (smaller ones are
  // below the differences' round-off).
  const floor = (g: Float64Array) => 1e-3 * Math.max(...g.map(Math.abs));
  const results: Array<[string, number]> = [['input', gradcheck(() => loss(), x.data, dx.data.slice(), { floor: floor(dx.data) }).maxRel]];
  for (const p of m.params) results.push([p.name, gradcheck(() => loss(), p.value, p.grad.slice(), { samples: 40, floor: floor(p.grad) }).maxRel]);
  for (const [what, e] of results) expect([name, what, e < 1e-6]).toEqual([name, what, true]);
}

const input = (n: number, cols: number, seed: number) => {
  const r = seeded(seed);
  return rows(Float64Array.from({ length: n * cols }, () => (r() - 0.5) * 2), n, cols);
};

test('every layer against finite differences: inputs and parameters', () => {
  checkModule('linear', linear(6, 5, { seed: 3 }), input(4, 6, 1));
  checkModule('linear, no bias, normal init', linear(6, 3, { bias: false, init: { std: 0.5 }, seed: 4 }), input(3, 6, 2));
  const norm = rmsNorm(7);
  norm.params[0]!.value.forEach((_, i, a) => (a[i] = 0.5 + i / 7));
  checkModule('rmsNorm', norm, input(3, 7, 3));
  for (const kind of ['silu', 'relu', 'tanh', 'gelu'] as const) checkModule(`activation ${kind}`, activation(kind), input(3, 5, 4));
  checkModule('mlp', mlp(5, 8, 4, { seed: 5 }), input(3, 5, 5));
  checkModule('swigluMlp', swigluMlp(6, 10, { seed: 6 }), input(4, 6, 6));
  checkModule('attentionPool', attentionPool(8, 3, 2, { seed: 7 }), input(5, 8, 7));
  checkModule('transformerLayer, causal', transformerLayer(8, 2, 12, { seed: 8 }), input(5, 8, 8));
  checkModule('transformerLayer, bidirectional', transformerLayer(8, 4, 12, { seed: 9, causal: false }), input(4, 8, 9));
  checkModule('sequential', sequential(rmsNorm(6), swigluMlp(6, 9, { seed: 10 }), linear(6, 2, { seed: 11 })), input(3, 6, 10));
});

test('attention pooling takes any number of rows to a fixed number', () => {
  const pool = attentionPool(8, 3, 2);
  for (const n of [1, 4, 11]) expect(pool.forward(input(n, 8, n)).y.rows).toBe(3);
  expect(() => pool.forward(input(2, 7, 1))).toThrow(InvalidArgumentError);
});

test('Adam and AdamW follow their update rule; clipping scales the gradient; state round-trips', () => {
  const p: Param = { name: 'w', shape: [2], value: Float64Array.from([1, -2]), grad: Float64Array.from([0.5, -3]) };
  const opt = adam([p], { lr: 0.1, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.01 });
  const v0 = p.value.slice();
  opt.step();
  // Step 1: m̂ = g, v̂ = g², so the update is lr·g/(|g| + eps), after decay.
  for (let i = 0; i < 2; i++) {
    const g = [0.5, -3][i]!;
    expect(p.value[i]).toBeCloseTo(v0[i]! * (1 - 0.1 * 0.01) - (0.1 * g) / (Math.abs(g) + 1e-8), 12);
  }
  // Clipping to norm 1 scales g by 1/‖g‖ (the step-1 direction is the same; the moments differ).
  const q: Param = { name: 'q', shape: [2], value: new Float64Array(2), grad: Float64Array.from([3, 4]) };
  const clipped = adam([q], { lr: 1, clipGradNorm: 1 });
  expect(clipped.step()).toBe(5);
  const m1 = clipped.state().moments.q!.m;
  expect(m1[0]).toBeCloseTo(0.1 * 0.6, 15);
  expect(m1[1]).toBeCloseTo(0.1 * 0.8, 15);
  // A resumed optimizer continues exactly.
  const a: Param = { name: 'a', shape: [3], value: Float64Array.from([1, 2, 3]), grad: new Float64Array(3) };
  const b: Param = { name: 'a', shape: [3], value: Float64Array.from([1, 2, 3]), grad: new Float64Array(3) };
  const oa = adam([a], { lr: 0.05 }), ob = adam([b], { lr: 0.05 });
  for (let s = 0; s < 3; s++) {
    for (const x of [a, b]) x.grad.set([Math.sin(s), Math.cos(s), s]);
    oa.step();
    ob.step();
  }
  const c: Param = { name: 'a', shape: [3], value: b.value.slice(), grad: new Float64Array(3) };
  const oc = adam([c], { lr: 0.05 });
  oc.loadState(ob.state());
  for (const x of [a, c]) x.grad.set([0.3, -0.2, 0.1]);
  oa.step();
  oc.step();
  expect(c.value).toEqual(a.value);
  expect(() => adam([a], { lr: -1 })).toThrow(/lr must be/);
  a.grad[0] = NaN;
  expect(() => oa.step()).toThrow(/not finite/);
});
