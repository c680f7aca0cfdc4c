/**
 * `npm run leak-check`: load, generate and dispose the embedded model 1,000 times (by default) and
 * check that resident memory stays flat, that no handles are left behind and that the thread count
 * does not grow. Prints the RSS curve; exits 1 when memory grows or something is left behind.
 *
 *   node --expose-gc dist/bench/dispose-loop.js [--iterations 1000] [--max-growth-mib 8]
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
  const maxGrowth = arg('--max-growth-mib', 8) * 2 ** 20;
  const rss: number[] = [];
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
    if ((i + 1) % Math.max(1, Math.floor(iterations / 10)) === 0) {
      // Collect JS garbage first (run with --expose-gc) so the curve shows what is really retained.
      (globalThis as { gc?: () => void }).gc?.();
      rss.push(process.memoryUsage().rss);
    }
  }
  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  // Each libuv pool thread that loads a model gets its own malloc arena once, so memory may step
  // up early; flat means no growth over the second half of the run.
  const growth = rss[rss.length - 1]! - rss[Math.floor(rss.length / 2) - 1]!;
  console.log(`dispose loop: ${iterations} × (load, snapshot, generate 4 tokens, dispose)`);
  console.log(`RSS (MiB) at each tenth: ${rss.map(mib).join(', ')}`);
  console.log(`growth over the second half: ${mib(growth)} MiB (limit ${mib(maxGrowth)})`);
  console.log(`active handles: ${startHandles} after 10 iterations, ${handles()} at the end; threads: ${startThreads} → ${threads()}`);
  if (growth > maxGrowth || handles() > startHandles || threads() > startThreads) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
