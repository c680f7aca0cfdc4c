/**
 * The engine against the float64 reference on Jamba configurations the fixtures do not cover:
 * other widths, head and expert counts, top-1 and top-3 routing, d_state not a multiple of the
 * vector width, d_conv 2 and 3, no conv bias, projection biases, tied embeddings, other eps and
 * layer schedules, and f32 / f16 / bf16 checkpoints, single-file and sharded.
 */
import fs from 'node:fs';
import { JambaModel, loadModel } from '../lib';
import { loadWeights, maxAbsDiff, referenceForward } from './helpers/reference-model';
import { rng, writeRandomCheckpoint } from './helpers/random-checkpoint';
import { BASE, CASES } from './helpers/random-configs';

describe.each(CASES)('%s', (_label, raw, dtype, shards) => {
  let dir: string;
  let model: JambaModel;
  const ids = (() => {
    const r = rng(7);
    return [1, ...Array.from({ length: 70 }, () => 3 + Math.floor(r() * 1020))];
  })();

  beforeAll(async () => {
    dir = writeRandomCheckpoint({ ...BASE, ...raw }, { dtype, shards, seed: 3 });
    model = await loadModel(dir);
  });
  afterAll(async () => {
    await model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('logits and every layer match the float64 reference', async () => {
    const { cfg, w } = loadWeights(dir);
    const r = referenceForward(cfg, w, ids);
    const out = await model.trace(ids);
    for (let L = 0; L < cfg.numHiddenLayers; L++) expect(maxAbsDiff(out[`layer${L}.out`]!, r.layers[L]!)).toBeLessThanOrEqual(1e-4);
    for (const [L, router] of r.router) expect(maxAbsDiff(out[`layer${L}.router_logits`]!, router)).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(out.logits!, r.logits)).toBeLessThanOrEqual(1e-4);
    // The comparison has teeth: the logits vary across the vocabulary and positions.
    const spread = Math.max(...r.logits) - Math.min(...r.logits);
    expect(spread).toBeGreaterThan(1);
  });

  test('prefill in pieces and token-by-token decode give the same logits', async () => {
    const full = await model.logits(ids);
    const V = model.config.vocabSize;
    const seq = model.createSequence();
    try {
      const a = await seq.evaluate(ids.slice(0, 17), { logits: 'all' });
      const b = await seq.evaluate(ids.slice(17, 50), { logits: 'all' });
      expect(maxAbsDiff(a, full.subarray(0, 17 * V))).toBeLessThanOrEqual(1e-5);
      expect(maxAbsDiff(b, full.subarray(17 * V, 50 * V))).toBeLessThanOrEqual(1e-5);
      for (let t = 50; t < ids.length; t++)
        expect(maxAbsDiff(await seq.evaluate([ids[t]!]), full.subarray(t * V, (t + 1) * V))).toBeLessThanOrEqual(1e-5);
    } finally {
      seq.dispose();
    }
  });

  test('a batch of prompts of different lengths equals each prompt alone', async () => {
    const prompts = [ids.slice(0, 5), ids.slice(0, 33), [1, 40, 41]];
    const opts = { maxTokens: 12, temperature: 0 };
    const batch = await model.completeBatch(prompts, opts);
    for (let i = 0; i < prompts.length; i++) expect(batch[i]!.tokens).toEqual((await model.complete(prompts[i]!, opts)).tokens);
    const sampled = { maxTokens: 12, temperature: 1.2, topP: 0.95, seed: 5 };
    const sb = await model.completeBatch(prompts, sampled);
    for (let i = 0; i < prompts.length; i++) expect(sb[i]!.tokens).toEqual((await model.complete(prompts[i]!, sampled)).tokens);
  });

  test('a soft prompt of arbitrary vectors, and the final hidden states, match the float64 reference', async () => {
    const { cfg, w } = loadWeights(dir);
    const H = cfg.hiddenSize;
    const r = rng(11);
    const soft = Float32Array.from({ length: 6 * H }, () => (r() * 2 - 1) * 1.5);
    const tail = ids.slice(1, 30);
    const ref = referenceForward(cfg, w, tail, soft);
    const logits = await model.logits(tail, { inputsEmbeds: soft });
    expect(logits.length).toBe((6 + tail.length) * cfg.vocabSize);
    expect(maxAbsDiff(logits, ref.logits)).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(await model.hiddenStates(tail, { inputsEmbeds: soft }), ref.finalNorm)).toBeLessThanOrEqual(1e-4);
    // Without the soft prompt the logits are different: the vectors really went in.
    const plain = referenceForward(cfg, w, tail);
    expect(maxAbsDiff(plain.logits, ref.logits.subarray(6 * cfg.vocabSize))).toBeGreaterThan(1e-2);
  });

  test('the embedding rows of tokens, fed as inputsEmbeds, reproduce those tokens\' logits exactly', async () => {
    const head = ids.slice(0, 9), tail = ids.slice(9, 40);
    const want = await model.logits([...head, ...tail]);
    expect(await model.logits(tail, { inputsEmbeds: model.embeddings(head) })).toEqual(want);
  });
});
