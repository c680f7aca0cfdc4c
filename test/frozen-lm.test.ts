/**
 * The frozen-model tools on the embedded model: soft prompts (inputsEmbeds), teacher-forced
 * scoring, final hidden states and multi-pass generation, each against an independent computation.
 */
import { EMBEDDING_POSITION, InvalidArgumentError, JambaModel, loadModel } from '../lib';
import { EMBEDDED } from './helpers/paths';

let model: JambaModel;
beforeAll(async () => {
  model = await loadModel(EMBEDDED);
});
afterAll(() => model.dispose());

/** log softmax(row)[t], written out independently of the library. */
function logSoftmaxAt(row: Float32Array, t: number): number {
  const m = Math.max(...row);
  let z = 0;
  for (const v of row) z += Math.exp(v - m);
  return row[t]! - m - Math.log(z);
}

describe('soft prompts', () => {
  test('embedding rows as inputsEmbeds reproduce the tokens exactly: logits, greedy and sampled generation', async () => {
    const ids = await model.tokenizer.encode('ROMEO:\nWhat light through yonder window');
    const head = ids.slice(0, 5), tail = ids.slice(5);
    expect(await model.logits(tail, { inputsEmbeds: model.embeddings(head) })).toEqual(await model.logits(ids));
    for (const o of [{ temperature: 0 }, { temperature: 1, topP: 0.9, seed: 3 }]) {
      const want = await model.complete(ids, { maxTokens: 24, ...o });
      const got = await model.complete(tail, { maxTokens: 24, ...o, inputsEmbeds: model.embeddings(head) });
      expect(got.tokens).toEqual(want.tokens);
    }
  });

  test('a sequence records soft-prompt positions and continues from them like from tokens', async () => {
    const ids = await model.tokenizer.encode('KING:\nNow');
    const a = model.createSequence(), b = model.createSequence();
    try {
      const ra = await a.run({ inputsEmbeds: model.embeddings(ids.slice(0, 3)), tokens: ids.slice(3) }, { logits: 'all', hidden: true });
      const rb = await b.run({ tokens: ids }, { logits: 'all', hidden: true });
      expect(ra.logits).toEqual(rb.logits);
      expect(ra.hidden).toEqual(rb.hidden);
      expect(a.tokens).toEqual([EMBEDDING_POSITION, EMBEDDING_POSITION, EMBEDDING_POSITION, ...ids.slice(3)]);
      expect(await a.evaluate([40])).toEqual(await b.evaluate([40]));
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  test('bad soft prompts are refused by name and leave the model usable', async () => {
    const H = model.config.hiddenSize;
    const bad: Array<[unknown, RegExp]> = [
      [new Float32Array(H + 1), /inputsEmbeds has 129 values, not a whole number of rows/],
      [Float32Array.from({ length: H }, (_, i) => (i === 7 ? NaN : 0)), /inputsEmbeds\[7\] = NaN is not finite/],
      [new Float64Array(H), /inputsEmbeds must be a Float32Array/],
      [[0, 1], /inputsEmbeds must be a Float32Array/],
    ];
    for (const [embeds, msg] of bad) {
      await expect(model.logits([1, 2], { inputsEmbeds: embeds as Float32Array })).rejects.toThrow(msg);
      await expect(model.complete('x', { inputsEmbeds: embeds as Float32Array })).rejects.toThrow(InvalidArgumentError);
    }
    expect(() => model.embeddings([model.config.vocabSize])).toThrow(/ids\[0\] = 1024 is not a token id/);
    expect((await model.complete('A', { maxTokens: 3, temperature: 0 })).tokens).toHaveLength(3);
  });
});

describe('score', () => {
  test('per-token log-probabilities equal log-softmax of the logits', async () => {
    const ids = await model.tokenizer.encode('First Citizen:\nBefore we proceed any further, hear me speak.');
    const V = model.config.vocabSize;
    const logits = await model.logits(ids);
    const s = await model.score(ids);
    expect(s.offset).toBe(1);
    expect(s.tokens).toEqual(ids);
    expect(s.logprobs).toHaveLength(ids.length - 1);
    s.logprobs.forEach((lp, j) => expect(lp).toBeCloseTo(logSoftmaxAt(logits.subarray(j * V, (j + 1) * V), ids[j + 1]!), 10));
    expect(s.sum).toBeCloseTo(s.logprobs.reduce((a, b) => a + b, 0), 10);
    expect(s.sum).toBeLessThan(0);
  });

  test('text gets a BOS; a context is evaluated but not scored; batches equal single calls', async () => {
    const text = 'MENENIUS:\nWhat work';
    const ids = await model.tokenizer.encode(text);
    expect((await model.score(text)).tokens).toEqual(ids);
    const cut = 6;
    const withContext = await model.score(ids.slice(cut), { context: ids.slice(0, cut) });
    const whole = await model.score(ids);
    expect(withContext.offset).toBe(0);
    withContext.logprobs.forEach((lp, j) => expect(lp).toBeCloseTo(whole.logprobs[cut - 1 + j]!, 10));
    const inputs = [ids, ids.slice(0, 4), [1, 50, 60, 70, 80]];
    const batch = await model.score(inputs);
    for (let i = 0; i < inputs.length; i++) expect(batch[i]).toEqual(await model.score(inputs[i]!));
  });

  test('a soft prompt conditions scoring like the tokens it encodes', async () => {
    const ids = await model.tokenizer.encode('CORIOLANUS:\nThey said');
    const a = await model.score(ids.slice(4), { inputsEmbeds: model.embeddings(ids.slice(0, 4)) });
    const b = await model.score(ids.slice(4), { context: ids.slice(0, 4) });
    expect(a).toEqual(b);
  });
});

test('final hidden states equal the final norm of the trace at every position', async () => {
  const ids = await model.tokenizer.encode('GLOUCESTER:\nNow is');
  const hidden = await model.hiddenStates(ids);
  const trace = await model.trace(ids);
  expect(hidden).toEqual(trace.final_norm);
  expect(hidden.length).toBe(ids.length * model.config.hiddenSize);
});

test('multiPass feeds the composed prompt back in and returns every pass', async () => {
  const calls: Array<[string, number, number]> = [];
  const compose = (prompt: string, candidates: Array<{ text: string }>, pass: number) => {
    calls.push([prompt, candidates.length, pass]);
    return `${prompt}${candidates[0]!.text}\nSecond thoughts:`;
  };
  const opts = { maxTokens: 12, temperature: 0.8, seed: 9 };
  const r = await model.multiPass('ROMEO:', { ...opts, compose, passes: 2, samples: 3 });
  expect(r.prompts).toHaveLength(2);
  expect(r.passes.map((p) => p.length)).toEqual([3, 3]);
  expect(calls).toEqual([['ROMEO:', 3, 0]]);
  const first = await Promise.all([9, 10, 11].map((seed) => model.complete('ROMEO:', { ...opts, seed })));
  expect(r.passes[0]!.map((c) => c.tokens)).toEqual(first.map((c) => c.tokens));
  expect(r.prompts[1]).toBe(`ROMEO:${first[0]!.text}\nSecond thoughts:`);
  expect(r.passes[1]![0]!.tokens).toEqual((await model.complete(r.prompts[1]!, opts)).tokens);
  await expect(model.multiPass('x', { compose: () => 'y', passes: 0 })).rejects.toThrow(/passes must be a positive integer/);
});
