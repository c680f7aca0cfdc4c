/**
 * Each CPU kernel against its float64 definition (test/helpers/reference-ops.ts) on fresh random
 * inputs of several shapes, odd sizes included, in the style of llm.c's dev/cuda checks.
 */
import { native } from '../lib/native';
import { rng } from './helpers/random-checkpoint';
import { attentionRef, conv1dRef, gemmRef, relErr, rmsnormRef, scanRef } from './helpers/reference-ops';
import { bf16ToF32, f32ToBf16 } from './helpers/st-io';

const ops = native().ops;
const rand = rng(42);
const randn = (n: number, scale = 1) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);

describe('gemm', () => {
  const shapes: Array<[number, number, number]> = [[1, 1, 1], [1, 17, 33], [3, 40, 19], [4, 16, 16], [5, 129, 70], [64, 96, 128], [67, 33, 1030], [130, 257, 31]];
  test.each(shapes)('f32 weights, M=%i N=%i K=%i, with and without bias', (m, n, k) => {
    const x = randn(m * k), w = randn(n * k), b = randn(n);
    expect(relErr(ops.gemm(x, m, w, n, k, 'f32'), gemmRef(x, m, w, n, k))).toBeLessThan(1e-6);
    expect(relErr(ops.gemm(x, m, w, n, k, 'f32', b), gemmRef(x, m, w, n, k, b))).toBeLessThan(1e-6);
  });
  test.each(shapes)('bf16 weights, M=%i N=%i K=%i', (m, n, k) => {
    const x = randn(m * k), bits = Uint16Array.from(randn(n * k), f32ToBf16);
    const wf = Float64Array.from(bits, bf16ToF32);
    expect(relErr(ops.gemm(x, m, bits, n, k, 'bf16'), gemmRef(x, m, wf, n, k))).toBeLessThan(1e-6);
  });
  test.each(shapes)('int8 weights dequantized in the kernel, M=%i N=%i K=%i', (m, n, k) => {
    const x = randn(m * k), w = randn(n * k);
    const { q, scale } = ops.quantizeInt8(w, n, k);
    const deq = Float64Array.from(q, (v, i) => v * scale[Math.floor(i / k)]!);
    expect(relErr(ops.gemm(x, m, w, n, k, 'int8'), gemmRef(x, m, deq, n, k))).toBeLessThan(1e-6);
  });
  test('a row does not depend on the rows computed with it', () => {
    const n = 77, k = 300, x = randn(9 * k), w = randn(n * k);
    const all = ops.gemm(x, 9, w, n, k, 'f32');
    for (let r = 0; r < 9; r++) expect(Array.from(ops.gemm(x.subarray(r * k, (r + 1) * k), 1, w, n, k, 'f32'))).toEqual(Array.from(all.subarray(r * n, (r + 1) * n)));
  });
  test('quantization: per-row scale, round half to even, zero rows', () => {
    const w = Float32Array.from([127, 63.5, -0.5, 1.5, /* row 2 */ 0, 0, 0, 0, /* row 3 */ -2, 1, 0.0078125, 2]);
    const { q, scale } = ops.quantizeInt8(w, 3, 4);
    expect(Array.from(scale)).toEqual([1, 0, Math.fround(2 / 127)]);
    expect(Array.from(q)).toEqual([127, 64, -0, 2, 0, 0, 0, 0, -127, 64, 0, 127].map((v) => v || 0));
  });
});

test.each([[1, 1], [3, 64], [17, 129], [200, 1000]])('rmsnorm rows=%i cols=%i', (rows, cols) => {
  const x = randn(rows * cols, 3), w = randn(cols);
  expect(relErr(ops.rmsnorm(x, rows, cols, w, 1e-6), rmsnormRef(x, rows, cols, w, 1e-6))).toBeLessThan(1e-6);
});

describe('causal conv1d + SiLU', () => {
  test.each([[1, 5, 4], [9, 33, 4], [70, 130, 3], [40, 17, 2], [6, 64, 1]])('T=%i C=%i width=%i, prefill then resumed', (T, C, width) => {
    const x = randn(T * C), w = randn(C * width), b = randn(C);
    const ref = conv1dRef(x, T, C, w, width, b);
    const state = new Float32Array(C * (width - 1));
    expect(relErr(ops.conv1d(x, T, C, w, width, b, state), ref)).toBeLessThan(1e-6);
    // Same input split in two calls, and then one token at a time, carrying the state.
    const s2 = new Float32Array(C * (width - 1));
    const cut = Math.ceil(T / 2);
    const first = ops.conv1d(x.subarray(0, cut * C), cut, C, w, width, null, s2);
    expect(relErr(first, conv1dRef(x.subarray(0, cut * C), cut, C, w, width, null))).toBeLessThan(1e-6);
    const s3 = new Float32Array(C * (width - 1));
    const rows: number[] = [];
    for (let t = 0; t < T; t++) rows.push(...ops.conv1d(x.subarray(t * C, (t + 1) * C), 1, C, w, width, b, s3));
    expect(relErr(rows, ref)).toBeLessThan(1e-6);
  });
});

describe('selective scan', () => {
  const inputs = (T: number, Di: number, N: number) => ({
    u: randn(T * Di), dt: randn(T * Di, 2), b: randn(T * N), c: randn(T * N), z: randn(T * Di, 2),
    a: Float32Array.from(randn(Di * N), (v) => -Math.exp(v)), d: randn(Di), dtBias: randn(Di), T, Di, N,
  });
  const run = (s: ReturnType<typeof inputs>, state: Float32Array) =>
    ops.selectiveScan(s.u, s.dt, s.b, s.c, s.z, s.a, s.d, s.dtBias, s.T, s.Di, s.N, state);

  test.each([[1, 16, 16], [7, 33, 8], [64, 48, 24], [130, 17, 1], [5, 256, 16]])('T=%i Di=%i N=%i from a carried state', (T, Di, N) => {
    const s = inputs(T, Di, N);
    const init = randn(Di * N);
    const state = Float32Array.from(init);
    const y = run(s, state);
    const ref = scanRef(s, init);
    expect(relErr(y, ref.y)).toBeLessThan(1e-5);
    expect(relErr(state, ref.state)).toBeLessThan(1e-5);
  });

  test('softplus passes large dt through unchanged (threshold 20)', () => {
    const s = inputs(3, 16, 4);
    s.dt.fill(30);
    const state = new Float32Array(16 * 4);
    expect(relErr(run(s, state), scanRef(s).y)).toBeLessThan(1e-5);
  });

  test('the batched decode update equals each sequence scanned alone', () => {
    const Di = 40, N = 12, S = 3;
    const s = inputs(S, Di, N);
    const states = randn(S * Di * N);
    const batched = Float32Array.from(states);
    const y = ops.selectiveScan(s.u, s.dt, s.b, s.c, s.z, s.a, s.d, s.dtBias, S, Di, N, batched, S);
    for (let q = 0; q < S; q++) {
      const one = { ...s, T: 1, u: s.u.subarray(q * Di, (q + 1) * Di), dt: s.dt.subarray(q * Di, (q + 1) * Di),
        b: s.b.subarray(q * N, (q + 1) * N), c: s.c.subarray(q * N, (q + 1) * N), z: s.z.subarray(q * Di, (q + 1) * Di) };
      const st = Float32Array.from(states.subarray(q * Di * N, (q + 1) * Di * N));
      expect(Array.from(run(one, st))).toEqual(Array.from(y.subarray(q * Di, (q + 1) * Di)));
      expect(Array.from(st)).toEqual(Array.from(batched.subarray(q * Di * N, (q + 1) * Di * N)));
    }
  });
});

describe('attention', () => {
  test.each([
    [1, 0, 1, 1, 8], [9, 0, 4, 2, 16], [70, 0, 4, 1, 32], [1, 200, 8, 2, 64], [13, 90, 6, 3, 24], [130, 5, 2, 2, 128],
  ])('T=%i past=%i heads=%i kv=%i hd=%i', (T, past, heads, kv, hd) => {
    const q = randn(T * heads * hd, 2), k = randn((past + T) * kv * hd, 2), v = randn((past + T) * kv * hd);
    expect(relErr(ops.attention(q, k, v, T, past, heads, kv, hd), attentionRef(q, k, v, T, past, heads, kv, hd))).toBeLessThan(1e-5);
  });
});

describe('router top-k', () => {
  test('softmax then top-k, no renormalisation, ties to the lower expert', () => {
    const logits = Float32Array.from([0, 1, 2, 3, /* tie */ 5, 5, 1, 5]);
    const { idx, weight } = ops.routerTopk(logits, 2, 4, 2);
    expect(Array.from(idx)).toEqual([3, 2, 0, 1]);
    const p = [0, 1, 2, 3].map((v) => Math.exp(v)), z = p.reduce((a, b) => a + b);
    expect(weight[0]).toBeCloseTo(p[3]! / z, 6);
    expect(weight[1]).toBeCloseTo(p[2]! / z, 6);
    expect(weight[0]! + weight[1]!).toBeLessThan(1);
  });
  test('random rows agree with a sort', () => {
    const T = 50, E = 16, k = 3, logits = randn(T * E, 4);
    const { idx } = ops.routerTopk(logits, T, E, k);
    for (let t = 0; t < T; t++) {
      const order = Array.from(logits.subarray(t * E, (t + 1) * E)).map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
      expect(Array.from(idx.subarray(t * k, (t + 1) * k))).toEqual(order.slice(0, k).map((o) => o[1]));
    }
  });

  test('a NaN or infinite logit routes to experts 0..k-1 with NaN weights, the rule both backends share', () => {
    // Any NaN logit makes every probability NaN (so does +∞: ∞ − ∞); NaN ranks after every number
    // and ties go to the lower expert, so the choice is fixed and the NaN propagates.
    // (The old comparator, not a strict weak order under NaN, put experts 1, 3, 0, 2 first at top-4 of 8.)
    for (const [E, k] of [[16, 2], [8, 4], [16, 5]] as const) {
      const rows = [[3, NaN], [0, NaN], [E - 1, NaN], [5, Infinity], [-1, NaN]] as const;
      const logits = new Float32Array(rows.length * E);
      rows.forEach(([at, v], t) => {
        for (let e = 0; e < E; e++) logits[t * E + e] = e * 0.1;
        if (at >= 0) logits[t * E + at] = v;
        else logits.fill(v, t * E, (t + 1) * E);
      });
      const { idx, weight } = ops.routerTopk(logits, rows.length, E, k);
      expect([E, k, Array.from(idx)]).toEqual([E, k, rows.flatMap(() => Array.from({ length: k }, (_, j) => j))]);
      expect(Array.from(weight).every(Number.isNaN)).toBe(true);
    }
  });
});

describe('rules the CUDA kernels share with the host', () => {
  test('the sampler\'s Gumbel noise is finite for every draw, the all-ones one included, and Gumbel-distributed', () => {
    const edges = ops.gumbelNoise(Uint32Array.from([0xffffffff, 0xfffffe00, 0xfffffdff, 0, 1, 0x80000000]));
    expect(Array.from(edges).every(Number.isFinite)).toBe(true);
    expect(edges[0]).toBeLessThan(16.7);
    expect(edges[3]).toBeGreaterThan(-2.9);
    // 2^20 draws evenly spread over the 32-bit range: increasing, with Gumbel(0, 1)'s mean γ and variance π²/6.
    const n = 1 << 20, bits = Uint32Array.from({ length: n }, (_, i) => i * 4096 + 2048), g = ops.gumbelNoise(bits);
    let mean = 0, sq = 0, increasing = true;
    for (let i = 0; i < n; i++) {
      mean += g[i]! / n;
      sq += (g[i]! * g[i]!) / n;
      if (i > 0 && g[i]! < g[i - 1]!) increasing = false;
    }
    expect(increasing).toBe(true);
    expect(Math.abs(mean - 0.5772156649)).toBeLessThan(2e-3);
    expect(Math.abs(sq - mean * mean - Math.PI ** 2 / 6)).toBeLessThan(1e-2);
  });

  /**
   * The tokens lib/sampling.ts keeps (its sampleToken, minus the draw): in the order (logit
   * descending, id ascending), the first topK, then the shortest prefix of those reaching topP of
   * their weight, then the weights ≥ minP (the best weighs 1). Written from that definition.
   */
  function keptByCuts(row: Float32Array, T: number, topK: number, topP: number, minP: number): Map<number, number> {
    const max = Math.max(...row);
    let order = Array.from(row, (x, i) => i).sort((a, b) => row[b]! - row[a]! || a - b);
    if (topK > 0) order = order.slice(0, topK);
    const w = (i: number) => Math.exp((row[i]! - max) / T);
    if (topP < 1) {
      const need = topP * order.reduce((t, i) => t + w(i), 0);
      let cum = 0, n = 0;
      while (n < order.length && cum < need) cum += w(order[n++]!);
      order = order.slice(0, n);
    }
    return new Map(order.filter((i) => w(i) >= minP).map((i) => [i, w(i)]));
  }

  test('the CUDA sampler\'s draw under top-k, top-p and min-p, run on the host, keeps exactly the tokens lib/sampling.ts keeps, by weight', () => {
    const r = rng(17);
    const outside: string[] = [];
    for (let c = 0; c < 400; c++) {
      const V = c % 50 === 0 ? 5000 : 1 + Math.floor(r() * 60);
      // Some rows with ties and masked (−∞) tokens.
      const row = Float32Array.from({ length: V }, () => (r() < 0.2 ? Math.round(r() * 3) : r() < 0.05 ? -Infinity : (r() * 2 - 1) * 4));
      if (row.every((x) => x === -Infinity)) row[0] = 0;
      const T = 0.3 + r() * 1.5, topK = r() < 0.5 ? Math.floor(r() * 8) : 0, topP = r() < 0.6 ? 0.2 + r() * 0.8 : 1, minP = r() < 0.4 ? r() * 0.3 : 0;
      const kept = keptByCuts(row, T, topK, topP, minP);
      for (let seed = 0; seed < 8; seed++) {
        const id = ops.sampleWithCuts(row, T, topK, topP, minP, seed, c);
        if (!kept.has(id)) outside.push(`case ${c} (V ${V}, T ${T.toFixed(2)}, k ${topK}, p ${topP.toFixed(2)}, min-p ${minP.toFixed(2)}), seed ${seed}: ${id}`);
      }
    }
    expect(outside).toEqual([]);
    // The same seed and step draw the same token; the frequencies follow the kept weights.
    const row = Float32Array.from([2.1, 0.3, 1.7, 1.7, -0.4, 0.9, 2.5, -1.2, 0.0, 1.1]);
    for (const [topK, topP, minP] of [[0, 0.8, 0], [6, 0.85, 0.05], [4, 1, 0], [0, 1, 0.2]] as const) {
      const kept = keptByCuts(row, 0.7, topK, topP, minP), total = [...kept.values()].reduce((a, b) => a + b, 0);
      const n = 20_000, counts = new Map<number, number>();
      for (let step = 0; step < n; step++) {
        const id = ops.sampleWithCuts(row, 0.7, topK, topP, minP, 5, step);
        counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      expect(ops.sampleWithCuts(row, 0.7, topK, topP, minP, 5, 123)).toBe(ops.sampleWithCuts(row, 0.7, topK, topP, minP, 5, 123));
      expect([...counts.keys()].every((id) => kept.has(id))).toBe(true);
      // Binomial standard error at n = 20,000 is at most 0.0036: 0.015 is over 4 of them.
      for (const [id, w] of kept) expect([topK, topP, minP, id, Math.abs((counts.get(id) ?? 0) / n - w / total) < 0.015]).toEqual([topK, topP, minP, id, true]);
    }
  });

  test('decode attention splits a sequence by its own length: about one split per 256 keys, ranges that tile it', () => {
    const lengths = [1, 2, 100, 255, 256, 511, 512, 513, 700, 767, 1000, 4096, 8191, 8192, 8193, 9000, 65_536, 262_144];
    for (let keys = 1; keys < 3000; keys += 7) lengths.push(keys);
    const wrong: string[] = [];
    for (const keys of lengths) {
      const r = ops.decodeSplitRanges(keys), splits = Math.min(32, Math.max(1, Math.floor(keys / 256)));
      let at = 0;
      for (let i = 0; i < r.length / 2; i++) {
        const [b, e] = [r[2 * i]!, r[2 * i + 1]!];
        const ok = i < splits ? b === at && e > b && e - b <= Math.ceil(keys / splits) : b === keys && e === keys;
        if (!ok) wrong.push(`${keys} keys, split ${i}: [${b}, ${e})`);
        at = e;
      }
      if (at !== keys) wrong.push(`${keys} keys: the splits end at ${at}`);
    }
    expect(wrong).toEqual([]);
    expect(() => ops.decodeSplitRanges(0)).toThrow(/keys is out of range/);
  });
});

test('bad arguments throw typed errors instead of reading out of bounds', () => {
  expect(() => ops.gemm(new Float32Array(3), 2, new Float32Array(4), 2, 2, 'f32')).toThrow(/x has 3 elements, needs 4/);
  expect(() => ops.attention(new Float32Array(8), new Float32Array(8), new Float32Array(8), 1, 0, 3, 2, 8)).toThrow(/multiple of kvHeads/);
  expect(() => ops.routerTopk(new Float32Array(4), 1, 4, 5)).toThrow(/exceeds/);
});
