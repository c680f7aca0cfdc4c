/**
 * `npm run leak-check`: load, generate and dispose the embedded model 1,000 times (by default) and
 * check that resident memory stays flat, that no handles are left behind and that the thread count
 * does not grow. Prints the RSS curve; exits 1 when memory grows or something is left behind.
 *
 *   node --expose-gc dist/bench/dispose-loop.js [--iterations 1000] [--max-growth-mib 16]
 */
import fs from 'node:fs';
import { loadModel } from '../lib';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};

function threads(): number {
  const m = /Threads:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : 0;
}

const handles = () => (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;

async function main(): Promise<void> {
  const iterations = arg('--iterations', 1000);
  // 16 MiB over 500 iterations: the allocator's noise stays within about ±8 MiB, and a leak of 32 KiB
  // per iteration (a fifth of one sequence's state, a few of the model's smallest tensors) fails.
  const maxGrowth = arg('--max-growth-mib', 16) * 2 ** 20;
  const rss: number[] = [];
  const heap: number[] = [];
  let startHandles = 0, startThreads = 0;
  for (let i = 0; i < iterations; i++) {
    const m = await loadModel();
    const seq = m.createSequence();
    await seq.evaluate([1, 508, 960, 964]);
    seq.snapshot();
    seq.dispose();
    await m.complete('ROMEO:\n', { maxTokens: 4, temperature: 0.8, seed: i });
    await m.dispose();
    if (i === 9) {
      startHandles = handles();
      startThreads = threads();
    }
    if ((i + 1) % Math.max(1, Math.floor(iterations / 20)) === 0) {
      // Collect JS garbage first (run with --expose-gc) so the curve shows what is really retained.
      (globalThis as { gc?: () => void }).gc?.();
      const mu = process.memoryUsage();
      rss.push(mu.rss);
      heap.push(mu.heapTotal);
    }
  }
  const endHandles = handles(), endThreads = threads();
  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  // V8 grows its young generation in steps (8 → 16 MiB semi-spaces) whatever the workload, so the
  // check is on memory outside the JS heap (RSS − V8's reserved heap): it must not grow over the
  // second half of the run.
  // Samples are noisy (allocator and page reuse), so the measure is the least-squares trend over
  // the second half, extrapolated over that half.
  const outside = rss.map((r, i) => r - heap[i]!);
  const half = outside.slice(Math.floor(outside.length / 2));
  const xs = half.map((_, i) => i), mx = (half.length - 1) / 2, my = half.reduce((a, b) => a + b, 0) / half.length;
  const slope = xs.reduce((a, x, i) => a + (x - mx) * (half[i]! - my), 0) / xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  const growth = slope * (half.length - 1);
  console.log(`dispose loop: ${iterations} × (load, snapshot, generate 4 tokens, dispose)`);
  console.log(`RSS (MiB) every 5%: ${rss.map(mib).join(', ')}`);
  console.log(`V8 heap reserved (MiB): ${heap.map(mib).join(', ')}`);
  console.log(`outside the JS heap (MiB): ${outside.map(mib).join(', ')}`);
  console.log(`trend outside the JS heap over the second half: ${mib(growth)} MiB (limit ${mib(maxGrowth)})`);
  console.log(`active handles: ${startHandles} after 10 iterations, ${endHandles} at the end; threads: ${startThreads} → ${endThreads}`);
  if (growth > maxGrowth || endHandles > startHandles || endThreads > startThreads) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
