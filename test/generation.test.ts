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
  const s = resolveSampling({ temperature: 0, repetitionPenalty: 4 }, 4);
  expect(sampleToken(logits, s, new Rng(1), [0])).toBe(2);  // 2/4 = 0.5 < 1
  expect(sampleToken(logits, s, new Rng(1), [])).toBe(0);
  const neg = Float32Array.from([-1, -0.5]);
  expect(sampleToken(neg, s, new Rng(1), [1])).toBe(0);  // -0.5·4 = -2 < -1
});

test('logit bias adds to logits; presence and frequency penalties count generated tokens only', () => {
  const logits = Float32Array.from([2, 1.5, 1, 0]);
  const pick = (o: Parameters<typeof resolveSampling>[0], ctx: number[], from: number) => sampleToken(logits, resolveSampling({ temperature: 0, ...o }, 4), new Rng(1), ctx, from);
  expect(pick({ logitBias: { 3: 2.5 } }, [], 0)).toBe(3);
  expect(pick({ logitBias: { 0: -100 } }, [], 0)).toBe(1);
  // Token 0 was generated twice (positions 1, 2; position 0 is the prompt): 2 − 0.2 − 2 × 0.2 = 1.4 < 1.5.
  expect(pick({ presencePenalty: 0.2, frequencyPenalty: 0.2 }, [1, 0, 0], 1)).toBe(1);
  expect(pick({ presencePenalty: 0.2, frequencyPenalty: 0.2 }, [0, 0, 1], 2)).toBe(0);  // token 0 is in the prompt only: not penalised
  expect(pick({ frequencyPenalty: -2 }, [0, 3, 3], 1)).toBe(3);  // negative: encourages repeats (0 + 2 × 2 > 2)
  expect(logits).toEqual(Float32Array.from([2, 1.5, 1, 0]));  // the logits themselves are untouched
  expect(() => resolveSampling({ logitBias: { 4: 1 } }, 4)).toThrow(/logitBias: "4" is not a token id below 4/);
  expect(() => resolveSampling({ logitBias: { 1: 101 } }, 4)).toThrow(/logitBias\[1\] must be a number in \[-100, 100\]/);
  expect(() => resolveSampling({ presencePenalty: 3 }, 4)).toThrow(/presencePenalty must be in \[-2, 2\]/);
});

test('generation honours logit bias and penalties end to end', async () => {
  const greedy = await model.complete('ROMEO:\n', { maxTokens: 12, temperature: 0 });
  const banned = greedy.tokens[0]!;
  const r = await model.complete('ROMEO:\n', { maxTokens: 12, temperature: 0, logitBias: { [banned]: -100 } });
  expect(r.tokens).not.toContain(banned);
  const free = await model.complete('ROMEO:\n', { maxTokens: 48, temperature: 0 });
  const penalised = await model.complete('ROMEO:\n', { maxTokens: 48, temperature: 0, frequencyPenalty: 2 });
  const repeats = (t: number[]) => t.length - new Set(t).size;
  expect(repeats(penalised.tokens)).toBeLessThan(repeats(free.tokens));
});

test('unknown option names are refused with the right spelling', async () => {
  await expect(model.complete('A', { max_tokens: 3 } as never)).rejects.toThrow("options: unknown option 'max_tokens'; did you mean 'maxTokens'?");
  await expect(model.complete('A', { temprature: 0 } as never)).rejects.toThrow("unknown option 'temprature'; did you mean 'temperature'?");
  await expect(model.complete('A', { wibble: 1 } as never)).rejects.toThrow(/unknown option 'wibble'$/);
  await expect(model.score('A', { contxt: 'B' } as never)).rejects.toThrow("score options: unknown option 'contxt'; did you mean 'context'?");
  await expect(model.logits([1, 2], { input_embeds: new Float32Array(0) } as never)).rejects.toThrow(/did you mean 'inputsEmbeds'/);
  await expect(model.chat([{ role: 'user', content: 'x' }], { add_generation_prompt: true } as never).next()).rejects.toThrow(/did you mean 'addGenerationPrompt'/);
  await expect(loadModel(EMBEDDED, { experts_int8: true } as never)).rejects.toThrow("loadModel options: unknown option 'experts_int8'; did you mean 'expertsInt8'?");
  expect((await model.complete('A', { maxTokens: 3, temperature: 0 })).tokens).toHaveLength(3);
});

test('stop may be one string', async () => {
  const full = await model.complete('ROMEO:\n', { maxTokens: 32, temperature: 0 });
  const cut = full.text.indexOf(' ', 3);
  const stop = full.text.slice(cut, cut + 2);
  const r = await model.complete('ROMEO:\n', { maxTokens: 32, temperature: 0, stop });
  expect(r.finishReason).toBe('stop');
  expect(r.text).toBe(full.text.slice(0, full.text.indexOf(stop)));
});

test('sampling follows the distribution', () => {
  const logits = Float32Array.from([Math.log(0.7), Math.log(0.2), Math.log(0.1)]);
  const s = resolveSampling({ temperature: 1, seed: 3 }, 3);
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

test('a prompt prefilled in chunks of any size gives the same tokens and logprobs, bit for bit', async () => {
  const chunked = await loadModel(EMBEDDED, { prefillChunkTokens: 5 });
  try {
    const p = 'ROMEO:\nBut soft, what light through yonder window breaks? It is the east, and Juliet is the sun.';
    const opts = { maxTokens: 12, temperature: 0, logprobs: 3 };
    const [a, b] = [await model.complete(p, opts), await chunked.complete(p, opts)];
    expect(b.tokens).toEqual(a.tokens);
    expect(JSON.stringify(b.logprobs)).toBe(JSON.stringify(a.logprobs));
  } finally {
    await chunked.dispose();
  }
  for (const v of [0, 1.5, -3]) await expect(loadModel(EMBEDDED, { prefillChunkTokens: v })).rejects.toThrow('prefillChunkTokens must be a positive integer');
});
