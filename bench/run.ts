/**
 * `npm run bench [-- --json] [-- --quick]`: the CPU benchmark. Measures this machine's ceilings
 * (float32 FMA peak, read bandwidth), then the GEMM as a fraction of the FMA peak, and the model:
 * prefill (pp512) and decode (tg128) of the embedded model, batched decode, int8 experts, and
 * weight streaming on a model larger than the caches. Rates follow llama-bench's conventions:
 * mean ± standard deviation over repetitions, tokenization and sampling excluded.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JambaModel, loadModel } from '../lib';
import { native } from '../lib/native';
import { writeBenchCheckpoint } from './checkpoint';
import { benchServer } from './server';

interface Row { case: string; value: number; std?: number; unit: string; ratio?: number; ratioOf?: string; target?: string }

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
const reps = quick ? 2 : 5;
const rows: Row[] = [];
const log = (s: string) => { if (!args.has('--json')) process.stderr.write(`${s}\n`); };

const stats = (xs: number[]) => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, xs.length - 1));
  return { mean, std };
};
const now = () => Number(process.hrtime.bigint()) / 1e9;

async function prefillRate(model: JambaModel, n: number): Promise<number[]> {
  const ids = [1, ...Array.from({ length: n - 1 }, (_, i) => 3 + ((i * 7919) % (model.config.vocabSize - 3)))];
  const out: number[] = [];
  for (let r = 0; r < reps + 1; r++) {
    const seq = model.createSequence();
    const t0 = now();
    await seq.evaluate(ids, { logits: 'last' });
    const dt = now() - t0;
    seq.dispose();
    if (r > 0) out.push(n / dt);  // the first run warms caches and the allocator
  }
  return out;
}

/** Decode rate of `batch` sequences stepping together, after a 16-token prompt each. */
async function decodeRate(model: JambaModel, steps: number, batch: number): Promise<number[]> {
  const out: number[] = [];
  for (let r = 0; r < reps + 1; r++) {
    const seqs = Array.from({ length: batch }, () => model.createSequence());
    await model.evaluateBatch(seqs, seqs.map((_, b) => [1, ...Array.from({ length: 15 }, (__, i) => 3 + ((b * 31 + i * 17) % 900))]));
    const t0 = now();
    for (let s = 0; s < steps; s++) await model.evaluateBatch(seqs, seqs.map((_, b) => [3 + ((s * 13 + b) % 900)]));
    const dt = now() - t0;
    seqs.forEach((q) => q.dispose());
    if (r > 0) out.push((steps * batch) / dt);
  }
  return out;
}

function add(r: Row) {
  rows.push(r);
  const v = r.std !== undefined ? `${r.value.toFixed(1)} ± ${r.std.toFixed(1)}` : r.value.toFixed(1);
  log(`  ${r.case}: ${v} ${r.unit}${r.ratio !== undefined ? `  (${(r.ratio * 100).toFixed(0)}% of ${r.ratioOf})` : ''}`);
}

async function main() {
  const ops = native().ops;
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const machine = { cpu, threads: ops.threads(), node: process.version, platform: `${os.platform()} ${os.arch()}` };
  log(`machine: ${cpu}, ${machine.threads} threads, node ${process.version}`);

  const fma = stats(Array.from({ length: 3 }, () => ops.fmaPeak(quick ? 0.2 : 0.5)));
  const bw = stats(Array.from({ length: 3 }, () => ops.readBandwidth(quick ? 0.3 : 0.6)));
  add({ case: 'ceiling: float32 FMA peak (all threads)', value: fma.mean, std: fma.std, unit: 'GFLOP/s' });
  add({ case: 'ceiling: read bandwidth, 256 MiB buffer', value: bw.mean, std: bw.std, unit: 'GB/s' });

  for (const [m, n, k] of [[64, 1024, 1024], [128, 1024, 1024], [512, 1024, 1024], [512, 512, 128], [1, 1024, 1024]] as const) {
    for (const mode of ['f32', 'bf16', 'int8'] as const) {
      const x = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i));
      const w = mode === 'bf16' ? Uint16Array.from({ length: n * k }, (_, i) => 0x3c00 + (i % 512)) : Float32Array.from({ length: n * k }, (_, i) => Math.cos(i));
      const r = stats(Array.from({ length: reps }, () => ops.gemmRate(x, m, w, n, k, mode, quick ? 0.1 : 0.25)));
      add({ case: `gemm ${mode} weights M=${m} N=${n} K=${k}`, value: r.mean, std: r.std, unit: 'GFLOP/s', ratio: r.mean / fma.mean, ratioOf: 'FMA peak',
        target: m >= 64 ? '≥ 50% of FMA peak' : undefined });
    }
  }

  const model = await loadModel();
  const pp = stats(await prefillRate(model, 512));
  add({ case: 'embedded model pp512 (prefill)', value: pp.mean, std: pp.std, unit: 'tok/s', target: '≥ 10,000 tok/s' });
  const tg = stats(await decodeRate(model, 128, 1));
  add({ case: 'embedded model tg128 (decode, batch 1)', value: tg.mean, std: tg.std, unit: 'tok/s', target: '≥ 1,000 tok/s (≤ 1 ms/token)' });
  const tg16 = stats(await decodeRate(model, 64, 16));
  add({ case: 'embedded model tg64 × 16 sequences (batched decode, total)', value: tg16.mean, std: tg16.std, unit: 'tok/s', ratio: tg16.mean / tg.mean, ratioOf: 'batch-1 rate' });
  const gen: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = now();
    const res = await model.complete('ROMEO:\n', { maxTokens: 128, temperature: 0.8, topP: 0.95, seed: r });
    gen.push(res.tokens.length / (now() - t0));
  }
  const g = stats(gen);
  add({ case: 'embedded model generate 128 tokens, sampled, text streamed (end to end)', value: g.mean, std: g.std, unit: 'tok/s' });

  // The HTTP server: streaming completions of 64 tokens on loopback.
  const srv = await benchServer(model, [1, 4, 16], (c) => (quick ? 4 : 8) * c);
  for (const r of srv) {
    add({ case: `server, concurrency ${r.concurrency}: generated tokens/s (${r.requests} requests, ${r.rps.toFixed(1)} req/s)`, value: r.tokensPerSecond, unit: 'tok/s',
      ratio: r.tokensPerSecond / srv[0]!.tokensPerSecond, ratioOf: 'concurrency 1' });
    add({ case: `server, concurrency ${r.concurrency}: time to first token (mean; p90 ${r.ttftP90Ms.toFixed(1)} ms)`, value: r.ttftMs, unit: 'ms' });
  }
  await model.dispose();

  const q = await loadModel(undefined, { expertsInt8: true });
  const tgq = stats(await decodeRate(q, 128, 1));
  add({ case: 'embedded model tg128, ExpertsInt8', value: tgq.mean, std: tgq.std, unit: 'tok/s', ratio: tgq.mean / tg.mean, ratioOf: 'bf16 experts' });
  await q.dispose();

  // Weight streaming: a model well beyond the caches; bytes of weights read per decoded token.
  const big = writeBenchCheckpoint(path.join(os.tmpdir(), 'jamba-bench-stream'));
  // Checkpoint load rate (files in the page cache: parsing, checking and packing, not the disk),
  // which docs/deploy.md turns into startup-probe timings.
  for (const expertsInt8 of [false, true]) {
    const times: number[] = [];
    for (let i = 0; i < (quick ? 1 : 3); i++) {
      const t0 = performance.now();
      await (await loadModel(big.dir, { expertsInt8 })).dispose();
      times.push((performance.now() - t0) / 1000);
    }
    const rate = stats(times.map((t) => big.bytes / 1e9 / t));
    add({ case: `checkpoint load, ${(big.bytes / 2 ** 20).toFixed(0)} MiB bf16${expertsInt8 ? ', ExpertsInt8' : ''}, from the page cache`, value: rate.mean, std: rate.std, unit: 'GB/s' });
  }
  const bm = await loadModel(big.dir);
  const btg = stats(await decodeRate(bm, quick ? 8 : 24, 1));
  const gbps = (btg.mean * big.bytesPerToken) / 1e9;
  add({ case: `weight streaming: decode of a ${(big.bytes / 2 ** 20).toFixed(0)} MiB bf16 model (${(big.bytesPerToken / 2 ** 20).toFixed(0)} MiB read per token)`,
    value: gbps, unit: 'GB/s', ratio: gbps / bw.mean, ratioOf: 'read bandwidth', target: '≥ 10 GB/s' });
  await bm.dispose();

  if (args.has('--json')) {
    process.stdout.write(`${JSON.stringify({ machine, reps, rows }, null, 2)}\n`);
  } else {
    const lines = ['| case | rate | ratio | target |', '|---|---|---|---|'];
    for (const r of rows) {
      const v = `${r.value.toFixed(1)}${r.std !== undefined ? ` ± ${r.std.toFixed(1)}` : ''} ${r.unit}`;
      lines.push(`| ${r.case} | ${v} | ${r.ratio !== undefined ? `${(r.ratio * 100).toFixed(0)}% of ${r.ratioOf}` : ''} | ${r.target ?? ''} |`);
    }
    process.stdout.write(`\n**${cpu}**, ${machine.threads} threads, Node ${process.version}, ${reps} repetitions\n\n${lines.join('\n')}\n\n` +
      'Peer (node-llama-cpp on the same model as an f32 GGUF): not run here; see README "Speed".\n');
  }
  fs.rmSync(big.dir, { recursive: true, force: true });
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
