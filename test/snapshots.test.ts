/** State snapshots, the prompt-prefix cache, and continuous batching of concurrent calls. */
import fs from 'node:fs';
import path from 'node:path';
import { GenerationResult, InvalidArgumentError, JambaModel, Snapshot, loadModel } from '../lib';
import { EMBEDDED, TINY_RANDOM } from './helpers/paths';

let model: JambaModel;
beforeAll(async () => {
  model = await loadModel(EMBEDDED, { prefixCacheBytes: 0 });
});
afterAll(() => model.dispose());

const greedy = { maxTokens: 40, temperature: 0 };

test('restore continues exactly as if the prefix had been evaluated again', async () => {
  const prompt = await model.tokenizer.encode('ROMEO:\nBut, soft! what light through yonder window breaks?\n');
  const rest = await model.tokenizer.encode(' It is the east, and Juliet is the sun.', { addSpecialTokens: false });
  const ref = model.createSequence();
  const full = await ref.evaluate([...prompt, ...rest], { logits: 'all' });

  const a = model.createSequence();
  await a.evaluate(prompt);
  const snap = a.snapshot();
  expect(snap.position).toBe(prompt.length);
  expect(Array.from(snap.tokens)).toEqual(prompt);
  // Diverge the original sequence, then bring the snapshot back on it and on a fresh one.
  await a.evaluate([5, 6, 7]);
  const b = model.createSequence();
  for (const s of [a, b]) {
    s.restore(snap);
    expect(s.position).toBe(prompt.length);
    const logits = await s.evaluate(rest, { logits: 'all' });
    expect(Array.from(logits)).toEqual(Array.from(full.subarray(prompt.length * 1024)));
  }
  [ref, a, b].forEach((s) => s.dispose());
});

test('a snapshot survives serialisation to a Buffer, and generation from it is identical', async () => {
  const prompt = await model.tokenizer.encode('KING HENRY:\nWhat');
  const direct = await model.complete(prompt, greedy);
  const seq = model.createSequence();
  await seq.evaluate(prompt);
  const buf = seq.snapshot().toBuffer();
  seq.dispose();
  const back = model.snapshotFromBuffer(buf);
  const s2 = model.createSequence();
  s2.restore(back);
  expect(s2.tokens).toEqual(prompt);
  // Greedy decoding by hand from the restored state.
  const out: number[] = [];
  let last = s2.lastLogits;
  for (let i = 0; i < greedy.maxTokens; i++) {
    let best = 0;
    for (let j = 1; j < last.length; j++) if (last[j]! > last[best]!) best = j;
    out.push(best);
    last = await s2.evaluate([best]);
  }
  expect(out).toEqual(direct.tokens);
  s2.dispose();
});

test('snapshots are refused by another model and when corrupt', async () => {
  const seq = model.createSequence();
  await seq.evaluate([1, 2, 3]);
  const buf = seq.snapshot().toBuffer();
  const other = await loadModel(TINY_RANDOM);
  try {
    expect(() => other.snapshotFromBuffer(buf)).toThrow(/another model/);
    const s = other.createSequence();
    expect(() => s.restore(Snapshot.fromBuffer(buf))).toThrow(/another model/);
    s.dispose();
  } finally {
    await other.dispose();
  }
  expect(() => Snapshot.fromBuffer(buf.subarray(0, buf.length - 3))).toThrow(InvalidArgumentError);
  expect(() => Snapshot.fromBuffer(Buffer.from('not a snapshot at all'))).toThrow(/wrong magic/);
  const grown = Buffer.concat([buf, Buffer.alloc(4)]);
  expect(() => Snapshot.fromBuffer(grown)).toThrow(/trailing bytes/);
  seq.dispose();
});

test('the prefix cache reuses a prompt state and changes nothing in the output', async () => {
  const cached = await loadModel(EMBEDDED);
  try {
    const system = 'First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n';
    const first = await cached.complete(system + 'First Citizen:\n', greedy);
    expect(first.cachedPromptTokens).toBe(0);
    // Same prompt again: the whole prompt state (and its logits) comes from the cache.
    const again = await cached.complete(system + 'First Citizen:\n', greedy);
    expect(again.cachedPromptTokens).toBe(again.promptTokens);
    expect(again.tokens).toEqual(first.tokens);
    // A longer prompt starting with the first one plus its reply: the previous turn is reused.
    const next = (system + 'First Citizen:\n') + first.text + '\nAll:\n';
    const turn2 = await cached.complete(next, greedy);
    const fresh = await model.complete(next, greedy);
    expect(turn2.cachedPromptTokens).toBeGreaterThan(first.promptTokens);
    expect(turn2.tokens).toEqual(fresh.tokens);
    expect(cached.stats.prefixCache.hits).toBeGreaterThanOrEqual(2);
  } finally {
    await cached.dispose();
  }
});

test('concurrent generations share forward passes (continuous batching)', async () => {
  const prompts = ['ROMEO:\n', 'JULIET:\n', 'KING HENRY:\n', 'All:\n'];
  const alone: GenerationResult[] = [];
  for (const p of prompts) alone.push(await model.complete(p, { maxTokens: 24, temperature: 0 }));
  const before = model.stats.passes;
  const together = await Promise.all(prompts.map((p) => model.complete(p, { maxTokens: 24, temperature: 0 })));
  const passes = model.stats.passes - before;
  together.forEach((r, i) => expect(r.tokens).toEqual(alone[i]!.tokens));
  // Alone, 4 generations of 24 tokens take 4 × 24 passes; together one pass serves every sequence.
  expect(passes).toBeLessThanOrEqual(26);
});

test('sequences join and leave between steps', async () => {
  const long = model.complete('ROMEO:\n', { maxTokens: 40, temperature: 0 });
  await new Promise((r) => setTimeout(r, 5));
  const late = model.complete('JULIET:\n', { maxTokens: 5, temperature: 0 });
  const [l, s] = await Promise.all([long, late]);
  expect(l.tokens).toEqual((await model.complete('ROMEO:\n', { maxTokens: 40, temperature: 0 })).tokens);
  expect(s.tokens).toEqual((await model.complete('JULIET:\n', { maxTokens: 5, temperature: 0 })).tokens);
});

test('aborting one generation leaves the others in its passes untouched', async () => {
  const ac = new AbortController();
  const victim = (async () => {
    let n = 0;
    for await (const piece of model.generate('ROMEO:\n', { maxTokens: 60, temperature: 0, signal: ac.signal })) if (piece && ++n === 5) ac.abort();
  })();
  const other = model.complete('JULIET:\n', { maxTokens: 30, temperature: 0 });
  await expect(victim).rejects.toThrow(/aborted/);
  expect((await other).tokens).toEqual((await model.complete('JULIET:\n', { maxTokens: 30, temperature: 0 })).tokens);
});

test('per-token log-probabilities are the log-softmax of the logits', async () => {
  const prompt = await model.tokenizer.encode('ROMEO:\n');
  const r = await model.complete(prompt, { maxTokens: 6, temperature: 0, logprobs: 3 });
  const logits = await model.logits([...prompt, ...r.tokens]);
  r.logprobs!.forEach((lp, i) => {
    const row = logits.subarray((prompt.length - 1 + i) * 1024, (prompt.length + i) * 1024);
    const max = Math.max(...row);
    const lse = Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0)) + max;
    expect(lp.token).toBe(r.tokens[i]);
    expect(lp.logprob).toBeCloseTo(row[lp.token]! - lse, 4);
    expect(lp.top).toHaveLength(3);
    expect(lp.top[0]!.token).toBe(lp.token);  // greedy: the chosen token is the most likely
    expect(lp.top[0]!.logprob).toBeGreaterThanOrEqual(lp.top[1]!.logprob);
  });
});

test('load reports progress up to the checkpoint size', async () => {
  const seen: Array<[number, number]> = [];
  const m = await loadModel(EMBEDDED, { onProgress: (done, total) => seen.push([done, total]) });
  await new Promise((r) => setImmediate(r));
  await m.dispose();
  const total = fs.statSync(path.join(EMBEDDED, 'model.safetensors')).size;
  expect(seen.length).toBeGreaterThan(10);
  expect(seen[seen.length - 1]![0]).toBe(seen[0]![1]);
  expect(seen[0]![1]).toBeLessThan(total);
  expect(seen.every(([d], i) => i === 0 || d >= seen[i - 1]![0])).toBe(true);
});
