/** Sampling, stop conditions, streaming, abort and batching on the embedded model. */
import fs from 'node:fs';
import path from 'node:path';
import { AbortError, JambaModel, loadModel } from '../lib';
import { Rng, argmax, resolveSampling, sampleToken } from '../lib/sampling';
import { copyModel, editJson } from './helpers/fixture-copy';
import { EMBEDDED } from './helpers/paths';

let model: JambaModel;
beforeAll(async () => {
  model = await loadModel(EMBEDDED);
});
afterAll(() => model.dispose());

const collect = async (it: AsyncIterable<string>) => {
  const pieces: string[] = [];
  for await (const p of it) pieces.push(p);
  return pieces;
};

test('temperature 0 is argmax of the logits at every step', async () => {
  const prompt = await model.tokenizer.encode('KING:\n');
  const out = await model.generateIds(prompt, { maxTokens: 10, temperature: 0 });
  const V = model.config.vocabSize;
  const logits = await model.logits([...prompt, ...out]);
  out.forEach((tok, i) => expect(tok).toBe(argmax(logits.subarray((prompt.length + i - 1) * V, (prompt.length + i) * V))));
});

test('the same seed gives the same text; other seeds differ', async () => {
  const opts = { maxTokens: 40, temperature: 1, seed: 1234 };
  const a = await model.complete('ROMEO:', opts);
  const b = await model.complete('ROMEO:', opts);
  expect(a.tokens).toEqual(b.tokens);
  const others = await Promise.all([1, 2, 3].map((seed) => model.complete('ROMEO:', { ...opts, seed })));
  expect(others.some((o) => o.text !== a.text)).toBe(true);
});

test('topK 1 and a tiny topP are greedy; minP 1 keeps only the best token', async () => {
  const greedy = (await model.complete('JULIET:', { maxTokens: 16, temperature: 0 })).tokens;
  for (const o of [{ topK: 1 }, { topP: 1e-6 }, { minP: 1 }])
    expect((await model.complete('JULIET:', { maxTokens: 16, temperature: 1.5, seed: 9, ...o })).tokens).toEqual(greedy);
});

test('repetition penalty lowers the logits of tokens already seen', () => {
  const logits = Float32Array.from([2, -2, 1, 0.5]);
  const s = resolveSampling({ temperature: 0, repetitionPenalty: 4 });
  expect(sampleToken(logits, s, new Rng(1), [0])).toBe(2);  // 2/4 = 0.5 < 1
  expect(sampleToken(logits, s, new Rng(1), [])).toBe(0);
  const neg = Float32Array.from([-1, -0.5]);
  expect(sampleToken(neg, s, new Rng(1), [1])).toBe(0);  // -0.5·4 = -2 < -1
});

test('sampling follows the distribution', () => {
  const logits = Float32Array.from([Math.log(0.7), Math.log(0.2), Math.log(0.1)]);
  const s = resolveSampling({ temperature: 1, seed: 3 });
  const rng = new Rng(3);
  const counts = [0, 0, 0];
  for (let i = 0; i < 20000; i++) counts[sampleToken(logits, s, rng, [])]!++;
  expect(counts[0]! / 20000).toBeCloseTo(0.7, 1);
  expect(counts[2]! / 20000).toBeCloseTo(0.1, 1);
});

test('maxTokens bounds the output; 0 generates nothing', async () => {
  expect((await model.complete('A', { maxTokens: 7, temperature: 0 })).tokens).toHaveLength(7);
  const none = await model.complete('A', { maxTokens: 0 });
  expect(none).toMatchObject({ tokens: [], text: '', finishReason: 'length' });
});

test('stop strings end generation and are not returned, streamed or not', async () => {
  const full = await model.complete('ROMEO:\n', { maxTokens: 48, temperature: 0 });
  expect(full.text.startsWith('itted to the court,\nEven')).toBe(true);
  const r = await model.complete('ROMEO:\n', { maxTokens: 48, temperature: 0, stop: ['court', 'nothing'] });
  expect(r).toMatchObject({ text: 'itted to the ', finishReason: 'stop' });
  const pieces = await collect(model.generate('ROMEO:\n', { maxTokens: 48, temperature: 0, stop: ['court'] }));
  expect(pieces.join('')).toBe('itted to the ');
  // A stop string spanning several tokens
  const r2 = await model.complete('ROMEO:\n', { maxTokens: 48, temperature: 0, stop: ['crown, and I'] });
  expect(r2.text).toBe('itted to the court,\nEven to the ');
});

test('EOS ends generation and is not returned', async () => {
  // Make the second greedy token of "ROMEO:\n" (id 317) the EOS of a copy of the model.
  const dir = copyModel(EMBEDDED);
  try {
    editJson(path.join(dir, 'config.json'), (j) => { j.eos_token_id = 317; });
    editJson(path.join(dir, 'generation_config.json'), (j) => { j.eos_token_id = 317; });
    const m = await loadModel(dir);
    expect(m.eosTokenIds).toContain(317);
    const r = await m.complete([1, 508, 960, 964], { maxTokens: 48, temperature: 0 });
    expect(r).toMatchObject({ tokens: [345], finishReason: 'eos' });
    await m.dispose();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('streamed pieces are UTF-8 safe and add up to the decoded continuation', async () => {
  // High temperature reaches byte-fallback tokens; a piece never ends inside a character.
  for (const seed of [1, 2, 3, 4, 5]) {
    const opts = { maxTokens: 60, temperature: 3, seed };
    const pieces = await collect(model.generate('Ça va? — ', opts));
    const res = await model.complete('Ça va? — ', opts);
    expect(pieces.join('')).toBe(res.text);
    const prompt = await model.tokenizer.encode('Ça va? — ');
    expect(res.text).toBe(model.tokenizer.decode([...prompt, ...res.tokens]).slice(model.tokenizer.decode(prompt).length));
  }
});

test('abort interrupts a long prefill and leaves the model usable', async () => {
  const ids = [1, ...Array.from({ length: 6000 }, (_, i) => 10 + (i % 900))];
  // The abort arrives while the first of twelve 512-token chunks is being evaluated natively.
  const ac = new AbortController();
  const pending = expect(model.logits(ids, { signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
  setImmediate(() => ac.abort());
  await pending;
  const ac2 = new AbortController();
  const gen = expect(collect(model.generate(ids, { maxTokens: 5, signal: ac2.signal }))).rejects.toBeInstanceOf(AbortError);
  setImmediate(() => ac2.abort());
  await gen;
  expect((await model.complete('ROMEO:\n', { maxTokens: 3, temperature: 0 })).tokens).toEqual([345, 317, 388]);
});

test('abort during decode stops the stream', async () => {
  const ac = new AbortController();
  const got: string[] = [];
  await expect((async () => {
    for await (const p of model.generate('ROMEO:', { maxTokens: 200, temperature: 0.8, seed: 1, signal: ac.signal })) {
      got.push(p);
      if (got.length === 3) ac.abort();
    }
  })()).rejects.toBeInstanceOf(AbortError);
  expect(got.length).toBe(3);
});

test('batched generation of prompts of different lengths equals each alone', async () => {
  const prompts = ['ROMEO:\n', 'First Citizen:\nBefore we proceed any further, hear me speak.', 'K'];
  for (const opts of [{ maxTokens: 30, temperature: 0 }, { maxTokens: 30, temperature: 0.9, seed: 77, topK: 40 }]) {
    const batch = await model.completeBatch(prompts, opts);
    // cachedPromptTokens differs: the runs alone find the prompts' states in the prefix cache.
    for (let i = 0; i < prompts.length; i++)
      expect({ ...batch[i], cachedPromptTokens: 0 }).toEqual({ ...(await model.complete(prompts[i]!, opts)), cachedPromptTokens: 0 });
  }
});

test('concurrent calls on one model all complete correctly', async () => {
  const expected = await model.complete('ROMEO:\n', { maxTokens: 20, temperature: 0 });
  const runs = await Promise.all(Array.from({ length: 6 }, () => model.complete('ROMEO:\n', { maxTokens: 20, temperature: 0 })));
  for (const r of runs) expect(r.tokens).toEqual(expected.tokens);
});
