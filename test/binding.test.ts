/** The N-API boundary: context-aware loading (worker threads), async work, disposal. */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { DisposedError, loadModel } from '../lib';
import { native } from '../lib/native';

const DIST = path.resolve(__dirname, '..', 'dist', 'lib', 'index.js');

function inWorker(): Promise<unknown> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { loadModel } = require(workerData.lib);
    (async () => {
      const m = await loadModel();
      const r = await m.complete('ROMEO:\\n', { maxTokens: 12, temperature: 0 });
      await m.dispose();
      parentPort.postMessage(r.tokens);
    })().catch((e) => parentPort.postMessage('error: ' + e.message));`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { lib: DIST } });
    w.once('message', (m) => { resolve(m); void w.terminate(); });
    w.once('error', reject);
  });
}

test('the addon loads and runs in worker threads, several at once, beside the main thread', async () => {
  const m = await loadModel();
  const main = (await m.complete('ROMEO:\n', { maxTokens: 12, temperature: 0 })).tokens;
  const [a, b] = await Promise.all([inWorker(), inWorker(), m.complete('ROMEO:\n', { maxTokens: 12, temperature: 0 })]);
  expect(a).toEqual(main);
  expect(b).toEqual(main);
  await m.dispose();
});

test('loading and generating do not block the event loop', async () => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const m = await loadModel();
  await m.logits(Array.from({ length: 2000 }, (_, i) => 1 + (i % 1000)));
  clearInterval(timer);
  expect(ticks).toBeGreaterThan(0);
  await m.dispose();
});

test('the thread pool is sized to the machine and created once', () => {
  const n = native().ops.threads();
  expect(n).toBeGreaterThanOrEqual(1);
  expect(native().ops.threads()).toBe(n);
});

test('dispose waits for the pass in flight; the next pass of that call and later calls fail', async () => {
  const m = await loadModel();
  const ids = Array.from({ length: 400 }, (_, i) => 1 + (i % 1000));
  const single = m.logits(ids);             // one pass
  const multi = expect(m.logits([...ids, ...ids])).rejects.toBeInstanceOf(DisposedError); // passes of 512 + 288
  await m.dispose();
  expect((await single).length).toBe(400 * 1024);
  await multi;
  await expect(m.logits([1])).rejects.toBeInstanceOf(DisposedError);
});

test('the native pass refuses ragged soft-prompt rows, wrong array types and CPU sampling, and the sequence stays usable', async () => {
  const { readConfig } = await import('../lib/config');
  const { readCheckpointTensors } = await import('../lib/safetensors');
  const { buildPlan } = await import('../lib/graph');
  const { defaultModelDir } = await import('../lib/paths');
  const dir = defaultModelDir();
  const cfg = readConfig(dir);
  const model = await native().NativeModel.load(buildPlan(cfg, readCheckpointTensors(dir), { expertsInt8: false }));
  const seq = model.newSequence();
  try {
    const H = cfg.hiddenSize, toks = [Int32Array.of(1, 40)];
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ embeds: [new Float32Array(H + 3)] }, /embeds\[0\] has 131 floats, not a multiple of the hidden size 128/],
      [{ embeds: [new Float64Array(H)] }, /embeds\[0\] must be a Float32Array/],
      [{ embeds: [] }, /one Float32Array \(or undefined\) per sequence/],
      [{ sample: [{ temperature: 0 }] }, /sampling inside the forward pass is a CUDA backend feature/],
      [{ profile: true }, /profile is a CUDA backend feature/],
      [{ sample: [{ temperature: -1 }] }, /invalid temperature, topK, topP or minP/],
      [{ sample: [{ temperature: 1, minP: 2 }] }, /sample\[0\] has an invalid temperature, topK, topP or minP/],
      [{ sample: 'x' }, /one object \(or undefined\) per sequence/],
    ];
    for (const [opts, msg] of bad) {
      const err = await model.forward([seq], toks, { logits: 'last', ...opts } as never).catch((e: Error & { code?: string }) => e);
      expect(err).toMatchObject({ code: 'invalid_argument' });
      expect((err as Error).message).toMatch(msg);
      expect(seq.position()).toBe(0);
    }
    const ok = await model.forward([seq], toks, { logits: 'last', embeds: [model.embed(Int32Array.of(1, 40))] });
    expect(ok.logits.length).toBe(cfg.vocabSize);
    expect(seq.position()).toBe(4);
  } finally {
    seq.dispose();
    model.dispose();
  }
});
