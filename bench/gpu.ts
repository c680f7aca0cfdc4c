/**
 * The GPU run: `node dist/bench/gpu.js [--peer peer.json] [--json]` on a machine with an NVIDIA
 * GPU and the CUDA build of the addon (bench/gpu/run.sh builds it there and runs this). First
 * every kernel check of test/gpu/checks.ts (each CUDA kernel against the CPU one), then each
 * kernel timed at Jamba-1.5-Mini shapes against the ceiling or the peer measured in the same run:
 * device copy bandwidth (here), cuBLAS bf16 through torch.matmul and torch's
 * scaled_dot_product_attention (bench/gpu/peer.py, whose JSON --peer reads). Exits non-zero if a
 * check failed. `--part decode|prefill|train|all` (default all) times only that part's kernels and
 * end-to-end rows (the kernel and model checks always run; the training checks with train and all). `--profile` instead prints where a decode step's time
 * goes (bench/gpu-profile.ts).
 */
import fs from 'node:fs';
import { native } from '../lib/native';
import { checks, groupOffsets } from '../test/gpu/checks';
import { modelChecks } from '../test/gpu/model-checks';
import { trainChecks } from '../test/gpu/train-checks';
import { E2eRow, endToEnd } from './gpu-e2e';
import { profileDecode } from './gpu-profile';
import { trainRows } from './gpu-train';

/**
 * The static review's predictions for this code (../shared/gpu-runs/2026-12-07-static-review.md,
 * written 2026-12-07 against commit 8061d75, H200 at Mini shapes), printed beside each measured row
 * so that one run shows where the model of the kernels was wrong.
 */
export const REVIEW: Record<string, string> = {
  'mamba b1': '6–8 µs (16–20% of copy)',
  'mamba b16': '30–45 µs (12–17% of copy)',
  'route 16': '3–5 µs',
  'route 4096': '60–120 µs (B15)',
  'int8 experts b1': '55–70% of copy',
  'int8 experts b16': '20–33% of copy (0.85–1.4 TB/s)',
  'bf16 b1': '85–92% of copy',
  'x_proj b1': '25–40% of copy (3–5 µs)',
  'sampling b1': '6–10 µs',
  'sampling b16': '8–14 µs',
  'decode attention': '1–6% of copy at 512–4K keys',
  'decode b1': '≈ 7.1 ms (6.3–9), 56–60% of roofline',
  'decode b1 top-p': '≈ 7.5 ms',
  'decode b16': '≈ 42 ms (31–52), ≈ 30% of roofline',
  'decode b16 top-p': '≈ 42.5 ms',
};

interface Peer {
  matmul_ms?: Record<string, number>;  // "m,n,k" → ms of one bf16 torch.matmul
  sdpa_ms?: Record<string, number>;    // "t,heads,kv_heads,head_dim" → ms of one causal SDPA
  device?: string;
}

const argv = process.argv.slice(2);
const json = argv.includes('--json');
const part = argv.includes('--part') ? argv[argv.indexOf('--part') + 1] : 'all';
if (part !== 'decode' && part !== 'prefill' && part !== 'train' && part !== 'all') {
  process.stderr.write(`bench/gpu: --part must be decode, prefill, train or all, got ${String(part)}\n`);
  process.exit(2);
}
const peerFile = argv.includes('--peer') ? argv[argv.indexOf('--peer') + 1] : undefined;
const peer: Peer = peerFile && fs.existsSync(peerFile) ? (JSON.parse(fs.readFileSync(peerFile, 'utf8')) as Peer) : {};
const say = (s: string) => { if (!json) process.stdout.write(`${s}\n`); };

const addon = native();
if (!addon.cuda) {
  process.stderr.write(`bench/gpu: this build has no CUDA backend (backend: ${addon.backend})\n`);
  process.exit(1);
}
const cuda = addon.cuda;
const dev = cuda.info();
say(`# ${dev.name} (sm_${dev.computeCapability.replace('.', '')}, ${dev.multiprocessors} SMs, ${(dev.totalBytes / 2 ** 30).toFixed(0)} GiB)`);

async function profile(): Promise<void> {
  const copy = cuda.copyBandwidth({ bytes: 1 << 30, repeat: 20 });
  const rows = await profileDecode(copy);
  if (json) process.stdout.write(`${JSON.stringify({ device: dev, copyGBs: copy, rows })}\n`);
  else {
    say(`One decode step of the Jamba-1.5-Mini layout (ExpertsInt8), op by op; device copy ${(copy / 1000).toFixed(2)} TB/s\n`);
    say('| op | bytes read | time | share | bandwidth |\n|---|---|---|---|---|');
    for (const r of rows) say(`| ${r.kernel} | ${r.shape} | ${r.value} | ${r.ratio} | ${r.target} |`);
  }
}

async function main(): Promise<void> {
  if (argv.includes('--profile')) return profile();
  let failed = 0;
  const all = [...checks.map((k) => ({ name: k.name, run: async () => k.run(cuda, addon.ops) })), ...modelChecks,
    ...(part === 'train' || part === 'all' ? trainChecks : [])];
  for (const c of all) {
    try {
      await c.run();
      say(`check ok   ${c.name}`);
    } catch (e) {
      failed++;
      say(`check FAIL ${c.name}: ${(e as Error).message}`);
    }
  }

  type Row = E2eRow;
  const rows: Row[] = [];
  const fill = (n: number, v = 0.5) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (((i * 2654435761) >>> 0) / 4294967296 - 0.5) * 2 * v;
    return a;
  };
  const rep = 20;

  const copy = cuda.copyBandwidth({ bytes: 1 << 30, repeat: rep });
  rows.push({ kernel: 'ceiling: device copy', shape: '1 GiB, read + write', value: `${(copy / 1000).toFixed(2)} TB/s`, ratio: '', target: '' });

  function attempt(name: string, of: 'decode' | 'prefill', f: () => void): void {
    if (part !== 'all' && part !== of) return;
    try {
      f();
    } catch (e) {
      rows.push({ kernel: name, shape: '', value: `failed: ${(e as Error).message}`, ratio: '', target: '' });
    }
  }

  attempt('selective scan (prefill)', 'prefill', () => {
    const T = 4096, Di = 8192, N = 16;
    const r = cuda.selectiveScan({ u: fill(T * Di), dt: fill(T * Di), b: fill(T * N), c: fill(T * N), z: fill(T * Di), a: fill(Di * N, 1).map((v) => -1 - Math.abs(v)),
      d: fill(Di), dtBias: fill(Di), state: new Float32Array(Di * N), tLen: T, dInner: Di, dState: N, dtype: 'bf16', repeat: rep });
    const bytes = (4 * T * Di + 2 * T * N) * 2;  // u, dt, z in and y out; B and C
    const tbs = bytes / (r.ms * 1e9);
    rows.push({ kernel: 'selective scan (prefill)', shape: `T ${T}, d_inner ${Di}, d_state ${N}, bf16`, value: `${tbs.toFixed(2)} TB/s effective`, ratio: `${(tbs / 1.35).toFixed(2)}× target`, target: '≥ 1.35 TB/s' });
  });
  attempt('Mamba decode step (fused)', 'decode', () => {
    // Jamba-1.5-Mini's Mamba after x_proj: the dt/B/C norms, dt_proj (dt_rank 256) and the state update, one launch.
    const Di = 8192, N = 16, R = 256;
    for (const B of [1, 16]) {
      const r = cuda.mambaDecodeStep({ p: fill(B * (R + 2 * N)), batch: B, dInner: Di, dState: N, dtRank: R, dtNorm: fill(R, 1), bNorm: fill(N, 1), cNorm: fill(N, 1),
        eps: 1e-6, dtProj: fill(Di * R, 0.05), dtBias: fill(Di), a: fill(Di * N, 1).map((v) => -1 - Math.abs(v)), d: fill(Di), u: fill(B * Di), z: fill(B * Di),
        pool: new Float32Array(B * Di * N), poolSlots: B, slots: Int32Array.from({ length: B }, (_, i) => i), dtype: 'bf16', repeat: rep });
      const bytes = Di * R * 2 + B * Di * N * 4 * 2 + B * Di * 2 * 3;  // dt_proj, the states read and written, u, z and y
      rows.push({ kernel: 'Mamba decode step (norms, dt_proj, state update fused)', shape: `batch ${B}, d_inner ${Di}, d_state ${N}, dt_rank ${R}`,
        value: `${(r.ms * 1000).toFixed(1)} µs, ${(bytes / (r.ms * 1e9)).toFixed(2)} TB/s`, ratio: `${((100 * bytes) / (r.ms * 1e6) / copy).toFixed(0)}% of copy`, target: '',
        predicted: REVIEW[B === 1 ? 'mamba b1' : 'mamba b16'] });
    }
  });
  attempt('causal conv1d (prefill)', 'prefill', () => {
    const T = 4096, C = 8192, K = 4;
    const r = cuda.conv1d({ x: fill(T * C), tLen: T, channels: C, w: fill(C * K), dConv: K, bias: fill(C), state: new Float32Array(C * (K - 1)), dtype: 'bf16', repeat: rep });
    const gbs = (2 * T * C * 2) / (r.ms * 1e6);
    rows.push({ kernel: 'causal conv1d (prefill)', shape: `T ${T}, channels ${C}, bf16`, value: `${(gbs / 1000).toFixed(2)} TB/s`, ratio: `${((100 * gbs) / copy).toFixed(0)}% of copy`, target: '≥ 85% of copy' });
  });
  attempt('MoE routing', 'decode', () => {
    for (const T of [16, 4096]) {
      const r = cuda.moeRoute({ logits: fill(T * 16, 3), tokens: T, experts: 16, k: 2, repeat: 100 });
      rows.push({ kernel: 'MoE routing (softmax, top-2, grouping)', shape: `${T} tokens, 16 experts`, value: `${(r.ms * 1000).toFixed(1)} µs`, ratio: T === 16 ? `${(5 / (r.ms * 1000)).toFixed(2)}× target` : '',
        target: T === 16 ? '≤ 5 µs per layer' : '≤ 20 µs', predicted: REVIEW[T === 16 ? 'route 16' : 'route 4096'] });
    }
  });
  attempt('expert GEMM', 'decode', () => {
    // Jamba-1.5-Mini's expert up-projection (gate or up half: 14336 × 4096), a few experts.
    const E = 4, n = 14336, k = 4096;
    const w = fill(E * n * k, 0.02);
    for (const m of [1, 4, 16, 64]) {
      const a = fill(E * m * k);
      const offsets = Int32Array.from({ length: E + 1 }, (_, i) => i * m);
      // As the executor runs them: up to 16 rows per expert (decode) the weight stream, above it the tiles.
      const skinny = m <= 16;
      const bf = cuda.groupedGemm({ a, rows: E * m, k, w, experts: E, n, offsets, outDtype: 'bf16', skinny, repeat: rep });
      const i8 = cuda.groupedGemm({ a, rows: E * m, k, w, experts: E, n, int8: true, offsets, outDtype: 'bf16', skinny, repeat: rep });
      const torchMs = peer.matmul_ms?.[`${m},${n},${k}`];
      const vs = torchMs ? (E * torchMs) / i8.ms : undefined;
      const int8Copy = (E * n * k) / (i8.ms * 1e6) / copy;  // int8 weight bytes per second / copy bandwidth
      rows.push({ kernel: `expert GEMM, ExpertsInt8 (${skinny ? 'skinny' : 'tiled'})`, shape: `${m} tokens/expert, ${n}×${k}`,
        value: `${(i8.ms * 1000 / E).toFixed(1)} µs/expert (bf16: ${(bf.ms * 1000 / E).toFixed(1)}), int8 at ${(100 * int8Copy).toFixed(0)}% of copy`,
        ratio: vs ? `${vs.toFixed(2)}× cuBLAS bf16` : 'no peer', target: skinny ? '≥ 3.3 TB/s of int8 weights (H200), ≥ 2.4 (H100)' : '',
        predicted: m === 1 ? REVIEW['int8 experts b1'] : m <= 16 ? REVIEW['int8 experts b16'] : '' });
    }
  });
  attempt('expert GEMM, batch 16 as routed', 'decode', () => {
    // What a batch of 16 gives the experts' gate|up half: 32 routed rows over 14 of the 16 experts
    // (uniform top-2 routing touches 16·(1 − (14/16)^16) ≈ 14.1), 2 or 3 rows each.
    const counts = [3, 2, 3, 2, 2, 3, 2, 2, 3, 2, 2, 2, 2, 2], E = counts.length, n = 14336, k = 4096;
    const offsets = groupOffsets(counts);
    const rowsIn = offsets[E]!;
    const r = cuda.groupedGemm({ a: fill(rowsIn * k), rows: rowsIn, k, w: fill(E * n * k, 0.02), experts: E, n, int8: true, offsets, outDtype: 'bf16', skinny: true, repeat: rep });
    const tbs = (E * n * k) / (r.ms * 1e9);
    rows.push({ kernel: 'expert GEMM, ExpertsInt8 (skinny), batch 16 as routed', shape: `${rowsIn} rows over ${E} experts, ${n}×${k}`,
      value: `${(r.ms * 1000).toFixed(0)} µs, int8 weights at ${tbs.toFixed(2)} TB/s`, ratio: `${((1000 * tbs * 100) / copy).toFixed(0)}% of copy`,
      target: '≥ 3.3 TB/s (H200), ≥ 2.4 (H100)', predicted: REVIEW['int8 experts b16'] });
  });
  attempt('skinny projections', 'decode', () => {
    // Jamba-1.5-Mini's decode projections at one row: in_proj, x_proj, out_proj, an expert's gate|up and the LM head.
    for (const [name, n, k] of [['in_proj', 16384, 4096], ['x_proj', 288, 8192], ['out_proj', 4096, 8192], ['dense gate|up', 28672, 4096], ['LM head', 65536, 4096]] as const) {
      const r = cuda.groupedGemm({ a: fill(k), rows: 1, k, w: fill(n * k, 0.02), experts: 1, n, offsets: Int32Array.of(0, 1), outDtype: 'bf16', skinny: true, repeat: rep });
      const gbs = (n * k * 2) / (r.ms * 1e6);
      rows.push({ kernel: `bf16 projection at M = 1, ${name}`, shape: `${k} → ${n}`, value: `${(gbs / 1000).toFixed(2)} TB/s (${(r.ms * 1000).toFixed(1)} µs)`,
        ratio: `${((100 * gbs) / copy).toFixed(0)}% of copy`, target: '≥ 85% of copy', predicted: REVIEW[name === 'x_proj' ? 'x_proj b1' : 'bf16 b1'] });
    }
  });
  attempt('sampling', 'decode', () => {
    const V = 65536;
    // Peaked logits, shaped like a trained model's (a few dominant tokens over a long tail), and a
    // near-uniform worst case for the cuts.
    const peaked = (rows: number) => {
      const x = fill(rows * V, 2);
      for (let r = 0; r < rows; r++) for (let j = 0; j < 8; j++) x[r * V + ((j * 7919 + r * 104729) % V)] = 12 - j;
      return x;
    };
    const flat = (rows: number) => fill(rows * V, 0.05);
    for (const [batch, o, what, logits] of [[1, { temperature: 0 }, 'greedy', peaked], [1, { temperature: 0.8 }, 'temperature', peaked],
      [16, { temperature: 0.8 }, 'temperature', peaked], [1, { temperature: 0.8, topP: 0.9 }, 'top-p 0.9, peaked', peaked],
      [16, { temperature: 0.8, topP: 0.9 }, 'top-p 0.9, peaked', peaked], [1, { temperature: 0.8, topP: 0.9 }, 'top-p 0.9, near-uniform', flat],
      [16, { temperature: 0.8, topP: 0.9 }, 'top-p 0.9, near-uniform', flat], [1, { temperature: 0.8, minP: 0.05 }, 'min-p 0.05, peaked', peaked],
      [1, { temperature: 0.8, topK: 50, topP: 0.9 }, 'top-k 50 and top-p 0.9, peaked', peaked]] as const) {
      const r = cuda.sample({ logits: logits(batch), rows: batch, vocab: V, seed: 1, ...o, repeat: 100 });
      const cuts = what.startsWith('top-p') && !what.includes('top-k');
      const limit = cuts ? (batch === 1 ? 30 : 60) : batch === 1 ? 20 : 60;
      const target = what.includes('top-k') || what.startsWith('min-p') ? '' : `≤ ${limit} µs`;
      rows.push({ kernel: `sampling, ${what}`, shape: `${V.toLocaleString('en')} vocabulary, batch ${batch}`, value: `${(r.ms * 1000).toFixed(1)} µs`,
        ratio: target ? `${(limit / (r.ms * 1000)).toFixed(2)}× target` : '', target,
        predicted: what.startsWith('top-p') ? 'the review measured ≈ 456 µs for the bisection it replaces' : REVIEW[batch === 1 ? 'sampling b1' : 'sampling b16'] });
    }
  });
  attempt('decode attention', 'decode', () => {
    // Splits follow each sequence's length (one per 256 keys, at most 32): 2 at 512 keys, 32 at 16K.
    const B = 4, H = 32, KV = 8, D = 128;
    for (const P of [512, 16384]) {
      const k = fill(B * P * KV * D), v = fill(B * P * KV * D);
      const r = cuda.attention({ q: fill(B * H * D), tokens: B, k, v, positions: P, heads: H, kvHeads: KV, headDim: D,
        past: Int32Array.from({ length: B }, () => P - 1), decode: true, dtype: 'bf16', repeat: rep });
      const tbs = (2 * B * P * KV * D * 2) / (r.ms * 1e9);
      rows.push({ kernel: 'decode attention (split-KV)', shape: `batch ${B} × ${P} keys, ${H}/${KV} heads, ${Math.min(32, Math.max(1, Math.floor(P / 256)))} splits`, value: `${tbs.toFixed(2)} TB/s of KV`,
        ratio: `${((1000 * tbs * 100) / copy).toFixed(0)}% of copy`, target: '≥ 85% of copy', predicted: P <= 4096 ? REVIEW['decode attention'] : '' });
    }
  });
  attempt('prefill attention', 'prefill', () => {
    const T = 4096, H = 32, KV = 8, D = 128;
    const r = cuda.attention({ q: fill(T * H * D), tokens: T, k: fill(T * KV * D), v: fill(T * KV * D), positions: T, heads: H, kvHeads: KV, headDim: D,
      past: Int32Array.of(0), dtype: 'bf16', repeat: 5 });
    const flops = 4 * T * T * H * D / 2;  // causal
    const sdpa = peer.sdpa_ms?.[`${T},${H},${KV},${D}`];
    rows.push({ kernel: 'flash attention (prefill, causal)', shape: `T ${T}, ${H}/${KV} heads × ${D}`, value: `${(flops / (r.ms * 1e9)).toFixed(0)} TFLOP/s`,
      ratio: sdpa ? `${(sdpa / r.ms).toFixed(2)}× SDPA` : 'no peer', target: '≥ 0.9× SDPA' });
  });
  // The prefill's yardstick: cuBLAS bf16 from the peer when it ran, else the own GEMM (labelled so).
  let gemmTflops = 0, rateName = 'the own GEMM rate (no peer)';
  attempt('dense GEMM rate', 'prefill', () => {
    // The dense 4096 × 14336 × 4096 (the yardstick), the Mamba in/out projections, and 256 rows
    // per expert over 8 experts (grouped, bf16 and ExpertsInt8) against cuBLAS dense at the same shape.
    for (const [m, n, k, experts] of [[4096, 14336, 4096, 1], [4096, 16384, 4096, 1], [4096, 4096, 8192, 1], [256, 14336, 4096, 8]] as const) {
      const w = fill(experts * n * k, 0.02), a = fill(experts * m * k);
      const offsets = Int32Array.from({ length: experts + 1 }, (_, i) => i * m);
      const torchMs = peer.matmul_ms?.[`${m},${n},${k}`];
      for (const int8 of experts > 1 ? [false, true] : [false]) {
        const r = cuda.groupedGemm({ a, rows: experts * m, k, w, experts, n, int8, offsets, outDtype: 'bf16', repeat: 10 });
        const perGroup = r.ms / experts, tflops = (2 * m * n * k) / (perGroup * 1e9);
        if (m === 4096 && n === 14336) {
          gemmTflops = tflops;
          if (torchMs) {
            gemmTflops = (2 * m * n * k) / (torchMs * 1e9);
            rateName = 'the cuBLAS rate';
          }
        }
        rows.push({ kernel: experts > 1 ? `grouped expert GEMM${int8 ? ', ExpertsInt8' : ', bf16'}` : 'GEMM bf16 (own kernel, mma.sync)',
          shape: experts > 1 ? `${experts} experts × ${m} rows, ${n}×${k}` : `${m}×${n}×${k}`, value: `${tflops.toFixed(0)} TFLOP/s`,
          ratio: torchMs ? `${(torchMs / perGroup).toFixed(2)}× cuBLAS bf16 dense` : 'no peer', target: experts > 1 ? '≥ 0.9× cuBLAS' : '≥ 0.8× cuBLAS' });
      }
    }
  });
  if (part !== 'train') {
    try {
      rows.push(...await endToEnd(copy, gemmTflops || 1, REVIEW, { decode: part !== 'prefill', prefill: part !== 'decode' }, rateName));
    } catch (e) {
      rows.push({ kernel: 'end to end (Jamba-1.5-Mini layout, ExpertsInt8)', shape: '', value: `failed: ${(e as Error).message}`, ratio: '', target: '' });
    }
  }
  if (part === 'train' || part === 'all') {
    try {
      rows.push(...await trainRows());
    } catch (e) {
      rows.push({ kernel: 'training (Jamba-1.5-Mini layers 0-7, ExpertsInt8)', shape: '', value: `failed: ${(e as Error).message}`, ratio: '', target: '' });
    }
  }

  if (json) process.stdout.write(`${JSON.stringify({ device: dev, checksFailed: failed, rows })}\n`);
  else {
    say(`\n| kernel | shape | rate | ratio | target | predicted by the static review (H200, 2026-12-07) |\n|---|---|---|---|---|---|`);
    for (const r of rows) say(`| ${r.kernel} | ${r.shape} | ${r.value} | ${r.ratio} | ${r.target} | ${r.predicted ?? ''} |`);
    say(`\n${all.length - failed}/${all.length} checks passed`);
  }
  process.exit(failed ? 1 : 0);
}

void main();
