/**
 * Every CUDA kernel against the CPU backend's kernel on fresh random inputs of several shapes,
 * odd sizes included (ggml's rule: each backend op is tested against the CPU one). Outputs start
 * as NaN on the device, so an element a kernel fails to write shows as a mismatch. Tolerances
 * are relative (‖gpu − cpu‖ / ‖cpu‖): 1e-5 for float32 paths, 1e-2 for bf16 ones; bf16 inputs
 * are rounded to bf16 before the CPU sees them, so both compute on the same values.
 *
 * Plain functions, so that jest (test/gpu.test.ts) and the GPU host's script (bench/gpu.ts,
 * which has no jest) run the same checks.
 */
import type { NativeCudaOps, NativeOps } from '../../lib/native';
import { rng } from '../helpers/rng';
import { bf16ToF32, f32ToBf16 } from '../helpers/st-io';

export interface GpuCheck {
  name: string;
  run(cuda: NativeCudaOps, cpu: NativeOps): void;
}


const rand = (r: () => number, n: number, amp = 1, center = 0) => Float32Array.from({ length: n }, () => center + (r() * 2 - 1) * amp);

/** Rounded to bf16 (round to nearest even), as the device conversion does. */
export function bf16(x: Float32Array): Float32Array {
  return x.map((v) => bf16ToF32(f32ToBf16(v)));
}

/** ‖a − b‖ / ‖b‖; NaN anywhere (an unwritten element) gives Infinity. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    if (!Number.isFinite(d)) return Infinity;
    num += d * d;
    den += b[i]! * b[i]!;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/** Group offsets of rows per group (E + 1 entries, an exclusive scan), as routing makes them. */
export function groupOffsets(counts: readonly number[]): Int32Array {
  const out = new Int32Array(counts.length + 1);
  counts.forEach((c, i) => { out[i + 1] = out[i]! + c; });
  return out;
}

function expectClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  const e = relErr(got, want);
  if (!(e <= tol)) throw new Error(`${what}: relative error ${e.toExponential(2)} > ${tol}`);
}

const TOL = { f32: 1e-5, bf16: 1e-2 } as const;
type Dt = keyof typeof TOL;
const DTYPES: Dt[] = ['f32', 'bf16'];
const inDt = (x: Float32Array, dt: Dt) => (dt === 'bf16' ? bf16(x) : x);

export const checks: GpuCheck[] = [
  {
    name: 'rmsnorm with fused residual add',
    run(cuda, cpu) {
      for (const dt of DTYPES)
        // Rows held in registers (1 to 8 groups of 4 per thread) and the scalar fallback (41, 20000).
        for (const [rows, cols] of [[1, 40], [2, 16], [7, 4096], [33, 4100], [3, 8192], [2, 16384], [1, 20000], [2, 41]] as const) {
          const r = rng(rows * cols);
          const h = rand(r, rows * cols, 2), delta = inDt(rand(r, rows * cols), dt), w = rand(r, cols, 0.5, 1);
          const got = cuda.rmsnormResidual({ h, delta, rows, cols, weight: w, eps: 1e-6, dtype: dt });
          const sum = h.map((v, i) => v + delta[i]!);
          expectClose(`${dt} ${rows}×${cols} residual`, got.h, sum, 1e-6);
          expectClose(`${dt} ${rows}×${cols} norm`, got.out, cpu.rmsnorm(sum, rows, cols, w, 1e-6), TOL[dt]);
        }
    },
  },
  {
    name: 'causal conv1d + SiLU (prefill) and its state',
    run(cuda, cpu) {
      for (const dt of DTYPES)
        for (const [T, C, K] of [[1, 40, 4], [3, 257, 2], [70, 8192, 4], [130, 130, 3]] as const) {
          const r = rng(T * C * K);
          const x = inDt(rand(r, T * C), dt), w = rand(r, C * K, 0.5), b = rand(r, C, 0.1), state = rand(r, C * (K - 1));
          const got = cuda.conv1d({ x, tLen: T, channels: C, w, dConv: K, bias: b, state, dtype: dt });
          const st = state.slice();
          expectClose(`${dt} T${T} C${C} K${K} out`, got.out, cpu.conv1d(x, T, C, w, K, b, st), TOL[dt]);
          expectClose(`${dt} T${T} C${C} K${K} state`, got.state, st, 0);
        }
    },
  },
  {
    name: 'causal conv1d decode step over a state pool',
    run(cuda, cpu) {
      const B = 5, C = 200, K = 4, P = 9;
      const slots = Int32Array.from([7, 0, 3, 8, 5]);
      for (const dt of DTYPES) {
        const r = rng(99);
        const x = inDt(rand(r, B * C), dt), w = rand(r, C * K, 0.5), pool = rand(r, P * C * (K - 1));
        const got = cuda.conv1dUpdate({ x, batch: B, channels: C, w, dConv: K, pool, poolSlots: P, slots, dtype: dt });
        const wantPool = pool.slice(), want = new Float32Array(B * C);
        for (let s = 0; s < B; s++) {
          const st = wantPool.subarray(slots[s]! * C * (K - 1), (slots[s]! + 1) * C * (K - 1));
          want.set(cpu.conv1d(x.subarray(s * C, (s + 1) * C), 1, C, w, K, null, st), s * C);
        }
        expectClose(`${dt} out`, got.out, want, TOL[dt]);
        expectClose(`${dt} pool`, got.pool, wantPool, 0);
      }
    },
  },
  {
    name: 'selective scan (prefill) with the final state',
    run(cuda, cpu) {
      for (const dt of DTYPES)
        for (const [T, Di, N] of [[1, 40, 16], [33, 130, 8], [100, 512, 16], [64, 96, 24], [17, 64, 4]] as const) {
          const r = rng(T + Di + N);
          const u = inDt(rand(r, T * Di), dt), dtv = inDt(rand(r, T * Di), dt), b = inDt(rand(r, T * N), dt), c = inDt(rand(r, T * N), dt);
          const z = inDt(rand(r, T * Di), dt), a = rand(r, Di * N, 1, -1.5), d = rand(r, Di), bias = rand(r, Di, 1, -2);
          const state = rand(r, Di * N, 0.5);
          const got = cuda.selectiveScan({ u, dt: dtv, b, c, z, a, d, dtBias: bias, state, tLen: T, dInner: Di, dState: N, dtype: dt });
          const st = state.slice();
          const want = cpu.selectiveScan(u, dtv, b, c, z, a, d, bias, T, Di, N, st);
          expectClose(`${dt} T${T} Di${Di} N${N} y`, got.y, want, TOL[dt]);
          expectClose(`${dt} T${T} Di${Di} N${N} state`, got.state, st, TOL.f32 * 10);
        }
    },
  },
  {
    name: "Mamba's fused decode step (dt/B/C norms, dt_proj, state update) over a state pool",
    run(cuda, cpu) {
      // Odd channel counts leave part of a warp past d_inner; dt_rank not a multiple of the lanes;
      // batches past a block's 4 sequences (in groups of 2), with dt_rank a multiple of 8 (16-byte
      // bf16 loads) and Jamba-1.5-Mini's 256.
      for (const [B, Di, N, R] of [[3, 136, 16, 8], [5, 67, 8, 13], [1, 64, 4, 5], [2, 96, 32, 24], [11, 200, 16, 32], [6, 72, 8, 256]] as const) {
        const P = B + 3, eps = 1e-6;
        const slots = Int32Array.from({ length: B }, (_, i) => (i * 5 + 2) % P);
        for (const dt of DTYPES) {
          const r = rng(B * Di + N);
          const p = rand(r, B * (R + 2 * N), 2), dtNorm = rand(r, R, 0.5, 1), bNorm = rand(r, N, 0.5, 1), cNorm = rand(r, N, 0.5, 1);
          const dtProj = inDt(rand(r, Di * R, 0.3), dt), dtBias = rand(r, Di, 1, -2), a = rand(r, Di * N, 1, -1.5), d = rand(r, Di);
          const u = inDt(rand(r, B * Di), dt), z = inDt(rand(r, B * Di), dt), pool = rand(r, P * Di * N, 0.5);
          const got = cuda.mambaDecodeStep({ p, batch: B, dInner: Di, dState: N, dtRank: R, dtNorm, bNorm, cNorm, eps, dtProj, dtBias, a, d, u, z,
            pool, poolSlots: P, slots, dtype: dt });
          // The CPU composition: the three norms, dt_proj without its bias, then the state update (which adds the bias).
          const seg = (from: number, len: number) => Float32Array.from({ length: B * len }, (_, i) => p[Math.floor(i / len) * (R + 2 * N) + from + (i % len)]!);
          const dtn = cpu.rmsnorm(seg(0, R), B, R, dtNorm, eps), bn = cpu.rmsnorm(seg(R, N), B, N, bNorm, eps), cn = cpu.rmsnorm(seg(R + N, N), B, N, cNorm, eps);
          const delta = cpu.gemm(dtn, B, dtProj, Di, R, 'f32');
          const states = new Float32Array(B * Di * N);
          slots.forEach((s, i) => states.set(pool.subarray(s * Di * N, (s + 1) * Di * N), i * Di * N));
          const want = cpu.selectiveScan(u, delta, bn, cn, z, a, d, dtBias, B, Di, N, states, B);
          const wantPool = pool.slice();
          slots.forEach((s, i) => wantPool.set(states.subarray(i * Di * N, (i + 1) * Di * N), s * Di * N));
          expectClose(`B${B} Di${Di} N${N} R${R} ${dt} y`, got.y, want, TOL[dt]);
          expectClose(`B${B} Di${Di} N${N} R${R} ${dt} pool`, got.pool, wantPool, dt === 'f32' ? TOL.f32 * 10 : TOL.bf16);
        }
      }
    },
  },
  {
    name: 'MoE routing: softmax top-k and grouping by expert on the device',
    run(cuda, cpu) {
      // Up to 256 tokens one block routes; above, the multi-block path (300, 4096).
      for (const [T, E, k] of [[1, 4, 2], [37, 16, 2], [300, 16, 1], [65, 8, 3], [4096, 16, 2]] as const) {
        const r = rng(T * E + k);
        const logits = rand(r, T * E, 3);
        // Rows with a NaN (all of it, or one logit) or +∞ route as the CPU routes them: experts 0..k-1, NaN weights.
        if (T > 3) {
          logits.fill(NaN, 0, E);
          logits[E + E - 1] = NaN;
          logits[2 * E + 1] = Infinity;
        }
        const got = cuda.moeRoute({ logits, tokens: T, experts: E, k });
        const want = cpu.routerTopk(logits, T, E, k);
        if (got.idx.join() !== want.idx.join()) throw new Error(`T${T} E${E} k${k}: expert choices differ`);
        for (let i = 0; i < T * k; i++)
          if (Number.isNaN(want.weight[i]!) !== Number.isNaN(got.weight[i]!)) throw new Error(`T${T} E${E} k${k}: weight ${i} is ${got.weight[i]}, the CPU's ${want.weight[i]}`);
        const finite = (w: Float32Array) => w.map((x) => (Number.isNaN(x) ? 0 : x));
        expectClose(`T${T} E${E} k${k} weights`, finite(got.weight), finite(want.weight), 1e-6);
        // Groups: offsets scan the counts; every (token, slot) has a row in its expert's group; rows are a permutation.
        const counts = new Array<number>(E).fill(0);
        for (const e of want.idx) counts[e]!++;
        if (got.counts.join() !== counts.join()) throw new Error(`T${T} E${E} k${k}: counts differ`);
        const active = counts.flatMap((c, e) => (c > 0 ? [e] : []));
        if (Array.from(got.active).join() !== [...active, ...new Array<number>(E - active.length).fill(-1)].join())
          throw new Error(`T${T} E${E} k${k}: active experts ${Array.from(got.active).join()} are not [${active.join()}] then -1`);
        for (let e = 0; e <= E; e++) if (got.offsets[e] !== counts.slice(0, e).reduce((a, b) => a + b, 0)) throw new Error('offsets are not the scan of counts');
        const seen = new Set<number>();
        for (let i = 0; i < T * k; i++) {
          const row = got.rowOf[i]!, e = want.idx[i]!;
          if (row < got.offsets[e]! || row >= got.offsets[e + 1]! || seen.has(row) || got.tokenOfRow[row] !== Math.floor(i / k))
            throw new Error(`T${T} E${E} k${k}: slot ${i} has row ${row} outside expert ${e}'s group or twice`);
          if (got.rowWeight[row] !== got.weight[i]) throw new Error(`T${T} E${E} k${k}: row ${row} carries another slot's weight`);
          seen.add(row);
        }
      }
    },
  },
  {
    name: 'int8 quantization on the device equals the CPU quantizer',
    run(cuda, cpu) {
      const r = rng(5);
      const w = bf16(rand(r, 37 * 200, 0.3));
      const got = cuda.quantizeInt8({ w, rows: 37, k: 200 });
      const want = cpu.quantizeInt8(w, 37, 200);
      if (Array.from(got.q).join() !== Array.from(want.q).join()) throw new Error('int8 values differ');
      expectClose('scales', got.scale, want.scale, 0);
    },
  },
  {
    name: 'grouped expert GEMM, bf16 and ExpertsInt8 weights, routing weight fused',
    run(cuda, cpu) {
      for (const int8 of [false, true])
        for (const [n, k, counts] of [[33, 7, [3, 0, 5]], [40, 40, [0, 3, 1, 0, 7]], [136, 64, [65, 1, 0, 130, 16]], [1024, 4096, [16, 16, 2, 9, 0]]] as Array<[number, number, number[]]>) {
          const E = counts.length, M = counts.reduce((x, y) => x + y, 0);
          const r = rng(n + k + M + (int8 ? 1 : 0));
          const a = bf16(rand(r, M * k)), w = bf16(rand(r, E * n * k, 1 / Math.sqrt(k))), rs = rand(r, M, 0.5, 0.5);
          const offsets = groupOffsets(counts);
          const got = cuda.groupedGemm({ a, rows: M, k, w, experts: E, n, int8, offsets, rowScale: rs });
          const want = new Float32Array(M * n);
          for (let e = 0; e < E; e++) {
            const m = counts[e]!;
            if (!m) continue;
            const o = offsets[e]!;
            const y = cpu.gemm(a.subarray(o * k, (o + m) * k), m, w.subarray(e * n * k, (e + 1) * n * k), n, k, int8 ? 'int8' : 'f32');
            for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) want[(o + i) * n + j] = y[i * n + j]! * rs[o + i]!;
          }
          expectClose(`${int8 ? 'int8' : 'bf16'} n${n} k${k} rows ${M}`, got.out, want, 1e-4);
        }
    },
  },
  {
    // The backward's product: dX = dY · W_e per expert group, the weights read along their
    // columns and transposed as they are staged; int8 scales go onto dY's tile (one bf16
    // rounding more than the forward, hence the bf16 tolerance there). Shapes: the element path
    // (odd n, k), partial tiles, a Mamba dt_rank-like narrow output, many experts with empty ones.
    name: 'grouped GEMM input gradient (dY·W, training): bf16 and ExpertsInt8 weights, routing weight fused',
    run(cuda, cpu) {
      const shapes: Array<[number, number, number[]]> = [[33, 7, [3, 0, 5]], [40, 24, [70, 1]], [256, 160, [0, 64, 65]], [96, 200, [2, 0, 0, 9, 1]]];
      for (const int8 of [false, true])
        for (const [n, k, counts] of shapes) {
          const E = counts.length, M = counts.reduce((x, y) => x + y, 0);
          const r = rng(n * 7 + k + M + (int8 ? 1 : 0));
          const dy = bf16(rand(r, M * n)), w = bf16(rand(r, E * n * k, 1 / Math.sqrt(n))), rs = rand(r, M, 0.5, 0.5);
          const offsets = groupOffsets(counts);
          // The weights as the device holds them: bf16, or the CPU quantizer's int8 rows times their scales.
          let wq = w;
          if (int8) {
            const q = cpu.quantizeInt8(w, E * n, k);
            wq = Float32Array.from(q.q, (v, i) => v * q.scale[Math.floor(i / k)]!);
          }
          const want = new Float32Array(M * k);
          for (let e = 0; e < E; e++)
            for (let i = offsets[e]!; i < offsets[e + 1]!; i++)
              for (let c = 0; c < k; c++) {
                let acc = 0;
                for (let j = 0; j < n; j++) acc += dy[i * n + j]! * wq[(e * n + j) * k + c]!;
                want[i * k + c] = acc * rs[i]!;
              }
          const got = cuda.groupedGemm({ a: dy, rows: M, k, w, experts: E, n, int8, offsets, rowScale: rs, dx: true });
          expectClose(`${int8 ? 'int8' : 'bf16'} n${n} k${k} rows ${counts.join('/')}`, got.out, want, int8 ? TOL.bf16 : 1e-4);
        }
    },
  },
  {
    name: 'skinny GEMM (decode weight stream): bf16 and ExpertsInt8, active experts only, SiLU gate fused, a row alike alone or batched',
    run(cuda, cpu) {
      // [n, k, rows per expert]: odd k (element path), k not a multiple of 16 (int8 element path),
      // N smaller than a block's columns, Jamba-1.5-Mini's widest and narrowest, more than 16 rows.
      const shapes: Array<[number, number, number[]]> = [[33, 7, [3, 0, 5]], [40, 40, [0, 3, 1, 0, 7]], [288, 1024, [1]], [3, 4096, [2, 16]],
        [1030, 512, [16, 0, 0, 1, 4]], [64, 96, [0, 0, 20]], [14336 * 2, 4096, [1, 0, 1]]];
      for (const int8 of [false, true])
        for (const [n, k, counts] of shapes) {
          const E = counts.length, M = counts.reduce((x, y) => x + y, 0);
          const r = rng(n * 3 + k + M + (int8 ? 1 : 0));
          const a = bf16(rand(r, M * k)), w = bf16(rand(r, E * n * k, 1 / Math.sqrt(k))), rs = rand(r, M, 0.5, 0.5);
          const offsets = groupOffsets(counts);
          const mode = int8 ? 'int8' : 'f32';
          const ref = new Float32Array(M * n);  // unscaled products, per expert from the CPU GEMM
          for (let e = 0; e < E; e++) {
            const m = counts[e]!, o = offsets[e]!;
            if (m) ref.set(cpu.gemm(a.subarray(o * k, (o + m) * k), m, w.subarray(e * n * k, (e + 1) * n * k), n, k, mode), o * n);
          }
          const what = `${mode} n${n} k${k} rows ${counts.join('/')}`;
          const got = cuda.groupedGemm({ a, rows: M, k, w, experts: E, n, int8, offsets, rowScale: rs, skinny: true });
          expectClose(what, got.out, ref.map((v, i) => v * rs[Math.floor(i / n)]!), 1e-4);
          if (n % 2 === 0) {
            const h = n / 2, gated = new Float32Array(M * h);
            for (let i = 0; i < M; i++)
              for (let j = 0; j < h; j++) {
                const g = ref[i * n + j]!;
                gated[i * h + j] = (g / (1 + Math.exp(-g))) * ref[i * n + h + j]!;
              }
            expectClose(`${what} gated`, cuda.groupedGemm({ a, rows: M, k, w, experts: E, n, int8, offsets, skinny: true, siluGate: true }).out, gated, 1e-4);
          }
          // Each row of the first non-empty expert alone gives the same bits as in its batch.
          const e0 = counts.findIndex((c) => c > 0), o0 = offsets[e0]!;
          const batch = cuda.groupedGemm({ a: a.subarray(o0 * k, (o0 + counts[e0]!) * k), rows: counts[e0]!, k, w: w.subarray(e0 * n * k, (e0 + 1) * n * k),
            experts: 1, n, int8, offsets: Int32Array.of(0, counts[e0]!), skinny: true }).out;
          for (let i = 0; i < counts[e0]!; i++) {
            const alone = cuda.groupedGemm({ a: a.subarray((o0 + i) * k, (o0 + i + 1) * k), rows: 1, k, w: w.subarray(e0 * n * k, (e0 + 1) * n * k),
              experts: 1, n, int8, offsets: Int32Array.of(0, 1), skinny: true }).out;
            for (let j = 0; j < n; j++)
              if (!Object.is(alone[j], batch[i * n + j])) throw new Error(`${what}: row ${i} column ${j} alone ${alone[j]} vs batched ${batch[i * n + j]}`);
          }
        }
    },
  },
  {
    name: 'the MoE feed-forward chained on the device (route, gather, expert GEMMs, SiLU gate, weighted combine), tiled and skinny',
    run(cuda, cpu) {
      for (const int8 of [false, true])
        for (const [T, H, E, k, I] of [[1, 64, 4, 2, 40], [37, 128, 16, 2, 96], [20, 256, 8, 3, 256], [16, 256, 16, 2, 128]] as const) {
          const r = rng(T * H + E + (int8 ? 7 : 0));
          const x = bf16(rand(r, T * H)), logits = rand(r, T * E, 2), h = rand(r, T * H);
          const wgu = bf16(rand(r, E * 2 * I * H, 1 / Math.sqrt(H))), wd = bf16(rand(r, E * H * I, 1 / Math.sqrt(I)));
          const got = cuda.moeBlock({ x, tokens: T, hidden: H, logits, experts: E, k, inner: I, wGateUp: wgu, wDown: wd, int8, h });
          const skinny = T <= 16 ? cuda.moeBlock({ x, tokens: T, hidden: H, logits, experts: E, k, inner: I, wGateUp: wgu, wDown: wd, int8, h, skinny: true }) : undefined;
          // The same block from the CPU kernels, token by token, slot by slot.
          const route = cpu.routerTopk(logits, T, E, k);
          const mode = int8 ? 'int8' : 'f32';
          const want = h.slice();
          for (let t = 0; t < T; t++)
            for (let j = 0; j < k; j++) {
              const e = route.idx[t * k + j]!, wt = route.weight[t * k + j]!;
              const gu = cpu.gemm(x.subarray(t * H, (t + 1) * H), 1, wgu.subarray(e * 2 * I * H, (e + 1) * 2 * I * H), 2 * I, H, mode);
              const act = new Float32Array(I).map((_, i) => (gu[i]! / (1 + Math.exp(-gu[i]!))) * gu[I + i]!);
              const y = cpu.gemm(act, 1, wd.subarray(e * H * I, (e + 1) * H * I), H, I, mode);
              for (let c = 0; c < H; c++) want[t * H + c]! += wt * y[c]!;
            }
          const delta = (a: Float32Array) => a.map((v, i) => v - h[i]!);
          expectClose(`${int8 ? 'int8' : 'bf16'} T${T} H${H} E${E} k${k} I${I}`, delta(got.h), delta(want), TOL.bf16);
          if (skinny) expectClose(`skinny ${int8 ? 'int8' : 'bf16'} T${T} H${H} E${E} k${k} I${I}`, delta(skinny.h), delta(want), TOL.bf16);
        }
    },
  },
  {
    name: 'embedding gather and KV-cache append',
    run(cuda) {
      for (const dt of DTYPES) {
        const r = rng(21);
        const V = 300, H = 72, ids = Int32Array.from([5, 0, 299, 5, 17]);
        const table = inDt(rand(r, V * H), dt);
        const got = cuda.embed({ table, vocab: V, hidden: H, ids, count: ids.length, dtype: dt });
        const want = new Float32Array(ids.length * H);
        ids.forEach((id, i) => want.set(table.subarray(id * H, (id + 1) * H), i * H));
        expectClose(`${dt} embed`, got.out, want, 0);
        // A width that is not a multiple of 8 takes the scalar gather.
        const narrow = cuda.embed({ table, vocab: V * 2, hidden: H / 2, ids, count: ids.length, dtype: dt });
        ids.forEach((id, i) => expectClose(`${dt} embed, width ${H / 2}`, narrow.out.subarray(i * H / 2, (i + 1) * H / 2), table.subarray(id * H / 2, (id + 1) * H / 2), 0));
        // Two sequences append 3 and 1 rows after 4 and 0 cached positions.
        const width = 48, kCol = 16, vCol = 32, kvw = 16, P = 8, rows = 4;
        const qkv = inDt(rand(r, rows * width), dt);
        const kv = cuda.appendKv({ qkv, rows, width, kCol, vCol, kvWidth: kvw, positions: P, slots: 2, past: Int32Array.from([4, 0]),
          tokenOffsets: Int32Array.from([0, 3, 4]), dtype: dt });
        const wantK = new Float32Array(2 * P * kvw), wantV = new Float32Array(2 * P * kvw);
        const place = (row: number, slot: number, pos: number) => {
          wantK.set(bf16(qkv.subarray(row * width + kCol, row * width + kCol + kvw)), (slot * P + pos) * kvw);
          wantV.set(bf16(qkv.subarray(row * width + vCol, row * width + vCol + kvw)), (slot * P + pos) * kvw);
        };
        place(0, 0, 4); place(1, 0, 5); place(2, 0, 6); place(3, 1, 0);
        expectClose(`${dt} keys`, kv.k, wantK, 0);
        expectClose(`${dt} values`, kv.v, wantV, 0);
      }
    },
  },
  {
    name: 'flash attention prefill (causal, grouped-query heads) over the KV cache',
    run(cuda, cpu) {
      for (const [T, past, H, KV, D] of [[1, 0, 4, 2, 8], [17, 5, 8, 1, 64], [130, 70, 4, 4, 128], [64, 0, 5, 5, 40]] as const) {
        const r = rng(T * 31 + past + D);
        const q = bf16(rand(r, T * H * D)), k = bf16(rand(r, (past + T) * KV * D)), v = bf16(rand(r, (past + T) * KV * D));
        const got = cuda.attention({ q, tokens: T, k, v, positions: past + T, heads: H, kvHeads: KV, headDim: D, past: Int32Array.of(past), dtype: 'bf16' });
        expectClose(`T${T} past${past} H${H}/${KV} D${D}`, got.out, cpu.attention(q, k, v, T, past, H, KV, D), TOL.bf16);
      }
    },
  },
  {
    name: 'split-KV decode attention: sequences of 1 to 11 splits, batched, bit-identical to each alone',
    run(cuda, cpu) {
      // Each sequence's split count comes from its own length (CPU test: decodeSplitRanges), so a
      // short sequence batched beside a long one sums in its own order.
      // 16-byte kernel: head_dim 128 (Mini's: 4 query heads per KV head), 64 with 8, 256 with 1; lane-strided: 72.
      for (const [H, KV, D] of [[8, 2, 128], [8, 1, 64], [4, 4, 256], [6, 2, 72]] as const) {
        const B = 5, P = 3000, kv = KV * D;
        const past = Int32Array.from([0, 63, 299, 699, 2999]);
        const r = rng(11 + D);
        const q = bf16(rand(r, B * H * D)), k = bf16(rand(r, B * P * kv)), v = bf16(rand(r, B * P * kv));
        const want = new Float32Array(B * H * D);
        for (let s = 0; s < B; s++) {
          const len = past[s]! + 1;
          want.set(cpu.attention(q.subarray(s * H * D, (s + 1) * H * D), k.subarray(s * P * kv, (s * P + len) * kv),
            v.subarray(s * P * kv, (s * P + len) * kv), 1, past[s]!, H, KV, D), s * H * D);
        }
        for (const dt of DTYPES) {
          const got = cuda.attention({ q, tokens: B, k, v, positions: P, heads: H, kvHeads: KV, headDim: D, past, decode: true, dtype: dt });
          expectClose(`${dt} ${H}/${KV} heads × ${D}, batch of ${B}`, got.out, want, TOL[dt]);
          for (let s = 0; s < B; s++) {
            const alone = cuda.attention({ q: q.subarray(s * H * D, (s + 1) * H * D), tokens: 1, k: k.subarray(s * P * kv, (s + 1) * P * kv),
              v: v.subarray(s * P * kv, (s + 1) * P * kv), positions: P, heads: H, kvHeads: KV, headDim: D, past: past.subarray(s, s + 1), decode: true, dtype: dt });
            const batched = got.out.subarray(s * H * D, (s + 1) * H * D);
            const i = alone.out.findIndex((x, j) => !Object.is(x, batched[j]));
            if (i >= 0) throw new Error(`${dt} ${H}/${KV} heads × ${D}: sequence ${s} (${past[s]! + 1} keys) batched differs from alone at ${i}: ${batched[i]} vs ${alone.out[i]}`);
          }
        }
      }
    },
  },
  {
    name: 'sampling on the device: greedy, top-k, top-p, the distribution, and grammar masks',
    run(cuda, cpu) {
      const V = 1000, R = 3;
      const r = rng(3);
      const logits = rand(r, R * V, 4);
      logits[5] = 50; logits[V + 999] = 50; logits[2 * V + 10] = 50; logits[2 * V + 20] = 50;  // ties go to the lower id
      const argmax = Array.from({ length: R }, (_, i) => {
        let best = 0;
        for (let j = 1; j < V; j++) if (logits[i * V + j]! > logits[i * V + best]!) best = j;
        return best;
      });
      for (const o of [{ temperature: 0 }, { temperature: 1, topK: 1 }, { temperature: 0.7, topP: 1e-6 }])
        if (cuda.sample({ logits, rows: R, vocab: V, ...o }).join() !== argmax.join()) throw new Error(`${JSON.stringify(o)} is not the argmax`);
      // A known distribution over 8 ids, 4000 rows at 4000 steps: frequencies within 5 standard deviations.
      const p = [0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02], rows = 4000;
      const lg = new Float32Array(rows * 8);
      for (let i = 0; i < rows; i++) for (let j = 0; j < 8; j++) lg[i * 8 + j] = Math.log(p[j]!);
      const steps = Int32Array.from({ length: rows }, (_, i) => i), later = steps.map((v) => v + rows);
      const draw = cuda.sample({ logits: lg, rows, vocab: 8, temperature: 1, seed: 42, steps });
      for (let j = 0; j < 8; j++) {
        const f = draw.filter((x) => x === j).length, sd = Math.sqrt(rows * p[j]! * (1 - p[j]!));
        if (Math.abs(f - rows * p[j]!) > 5 * sd) throw new Error(`id ${j}: ${f} draws, expected ${rows * p[j]!}`);
      }
      const topk = cuda.sample({ logits: lg, rows, vocab: 8, temperature: 1, topK: 3, seed: 42, steps });
      if (topk.some((x) => x > 2)) throw new Error('top-k 3 drew outside the 3 most likely ids');
      const topp = cuda.sample({ logits: lg, rows, vocab: 8, temperature: 1, topP: 0.6, seed: 42, steps });
      if (topp.some((x) => x > 2)) throw new Error('top-p 0.6 drew outside the smallest set holding 60%');
      if (cuda.sample({ logits: lg, rows, vocab: 8, temperature: 1, seed: 42, steps }).join() !== draw.join()) throw new Error('same seed and steps, different draws');
      if (cuda.sample({ logits: lg, rows, vocab: 8, temperature: 1, seed: 42, steps: later }).join() === draw.join()) throw new Error('other steps drew the same');
      // The one-pass (Gumbel-max) path over a vocabulary split among several blocks: the same distribution.
      const BV = 5000, ids8 = [0, 1100, 2200, 2300, 3333, 4095, 4096, 4999];
      const wide = new Float32Array(rows * BV).fill(-1e4);
      for (let i = 0; i < rows; i++) ids8.forEach((id, j) => (wide[i * BV + id] = Math.log(p[j]!)));
      const wideDraw = cuda.sample({ logits: wide, rows, vocab: BV, temperature: 1, seed: 7, steps });
      ids8.forEach((id, j) => {
        const f = wideDraw.filter((x) => x === id).length, sd = Math.sqrt(rows * p[j]! * (1 - p[j]!));
        if (Math.abs(f - rows * p[j]!) > 5 * sd) throw new Error(`vocabulary ${BV}: id ${id}: ${f} draws, expected ${rows * p[j]!}`);
      });
      if (wideDraw.some((x) => !ids8.includes(x))) throw new Error('drew an id of logit −10,000');
      // Cuts by rejection (csrc/core/cut_sampling.h, checked on the host by test/kernels.test.ts): min-p on the device,
      // and top-p 0.9 with top-k and min-p over 65,536 tokens whose tail holds real mass, against the host's draws.
      const minp = cuda.sample({ logits: lg, rows, vocab: 8, temperature: 1, minP: 0.3, seed: 42, steps });
      if (minp.some((x) => x > 4)) throw new Error('min-p 0.3 drew an id below 0.3 × the best');
      const FV = 65536, few = 1000, tailLogit = -11;
      const full = new Float32Array(few * FV).fill(tailLogit);
      for (let i = 0; i < few; i++) ids8.forEach((id, j) => (full[i * FV + id * 13] = Math.log(p[j]!)));
      const fsteps = steps.subarray(0, few);
      for (const cut of [{ topP: 0.9 }, { topP: 0.9, topK: 40 }, { topP: 0.95, minP: 1e-5 }]) {
        const dev = cuda.sample({ logits: full, rows: few, vocab: FV, temperature: 1, seed: 11, steps: fsteps, ...cut });
        const host = Array.from(fsteps, (st) => cpu.sampleWithCuts(full.subarray(0, FV), 1, cut.topK ?? 0, cut.topP, cut.minP ?? 0, 11, st + few));
        for (const j of [...ids8.map((id) => id * 13), -1]) {
          const freq = (xs: ArrayLike<number>) => Array.from(xs).filter((x) => (j < 0 ? !ids8.includes(x / 13) : x === j)).length / few;
          const a = freq(dev), b = freq(host), sd = Math.sqrt(Math.max(a, b, 1 / few) / few);
          if (Math.abs(a - b) > 5 * sd * Math.SQRT2) throw new Error(`${JSON.stringify(cut)}: ${j < 0 ? 'the tail' : `id ${j}`} drawn ${a} of the time on the device, ${b} on the host`);
        }
      }
      // A grammar's bitmask: only allowed ids are drawn, greedy or sampled; greedy takes the best allowed one.
      const W = Math.ceil(V / 32), mask = new Int32Array(R * W);
      const allowed = (r: number, id: number) => (id * 7 + r) % 5 === 0;
      for (let r = 0; r < R; r++) for (let id = 0; id < V; id++) if (allowed(r, id)) mask[r * W + (id >> 5)]! |= 1 << (id & 31);
      const bestAllowed = Array.from({ length: R }, (_, r) => {
        let best = -1;
        for (let j = 0; j < V; j++) if (allowed(r, j) && (best < 0 || logits[r * V + j]! > logits[r * V + best]!)) best = j;
        return best;
      });
      if (cuda.sample({ logits, rows: R, vocab: V, temperature: 0, mask }).join() !== bestAllowed.join()) throw new Error('masked greedy is not the best allowed id');
      for (let seed = 0; seed < 20; seed++)
        cuda.sample({ logits, rows: R, vocab: V, temperature: 1.5, topP: 0.99, seed, mask }).forEach((id, r) => {
          if (!allowed(r, id)) throw new Error(`row ${r} drew ${id}, which its mask forbids`);
        });
    },
  },
];
