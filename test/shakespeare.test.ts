/**
 * The embedded model (models/jamba-tiny-shakespeare, the package default) against the references
 * in test/fixtures/jamba-tiny-shakespeare: validation logits, validation NLL under the reference's
 * window protocol, and the three greedy continuations token for token.
 */
import fs from 'node:fs';
import path from 'node:path';
import { JambaModel, loadModel, windowedNll } from '../lib';
import { sequenceNll } from '../lib/evaluate';
import { CORPUS, SHAKESPEARE_REF } from './helpers/paths';
import { maxAbsDiff } from './helpers/reference-model';
import { readTensor } from './helpers/st-io';

const REF = path.join(SHAKESPEARE_REF, 'reference.safetensors');
const refJson = JSON.parse(fs.readFileSync(path.join(SHAKESPEARE_REF, 'reference.json'), 'utf8')) as {
  val_window_nll: number; val_nll_first40k_tokens_512windows: number; val_tokens_scored: number;
  greedy: Record<string, { prompt_ids: number[]; greedy_ids: number[]; greedy_text: string }>;
};

let model: JambaModel;
beforeAll(async () => {
  model = await loadModel();  // no folder: the model shipped in the package
});
afterAll(() => model.dispose());

test('the default model is the embedded Shakespeare model', () => {
  expect(model.dir).toBe(path.resolve(__dirname, '..', 'models', 'jamba-tiny-shakespeare'));
  expect(model.inspect().parameters.total).toBe(3097240);
});

test('validation logits match the float64 reference', async () => {
  const ids = Array.from(readTensor(REF, 'val.input_ids').data);
  const logits = await model.logits(ids);
  expect(maxAbsDiff(logits, readTensor(REF, 'val.logits').data)).toBeLessThanOrEqual(1e-4);
  const { sum, count } = sequenceNll(logits, ids, model.config.vocabSize);
  expect(Math.abs(sum / count - refJson.val_window_nll)).toBeLessThan(1e-5);
});

test.each(Object.entries(refJson.greedy))('greedy continuation of %j, 48 tokens', async (prompt, g) => {
  expect(await model.tokenizer.encode(prompt)).toEqual(g.prompt_ids);
  const tokens = await model.generateIds(g.prompt_ids, { maxTokens: 48, temperature: 0 });
  expect(tokens).toEqual(g.greedy_ids.slice(g.prompt_ids.length));
  const res = await model.complete(prompt, { maxTokens: 48, temperature: 0 });
  expect(prompt + res.text).toBe(g.greedy_text);
  expect(res.finishReason).toBe('length');
  let streamed = '';
  for await (const piece of model.generate(prompt, { maxTokens: 48, temperature: 0 })) streamed += piece;
  expect(streamed).toBe(res.text);
});

test('validation NLL over the first 39,936 tokens in windows of BOS + 512', async () => {
  const text = fs.readFileSync(CORPUS, 'utf8');
  const all = await model.tokenizer.encode(text, { addSpecialTokens: false });
  const val = all.slice(Math.floor(0.9 * all.length));
  expect(val.slice(0, 256)).toEqual(Array.from(readTensor(REF, 'val.input_ids').data).slice(1));
  const r = await windowedNll(model, val, { window: 512, maxTokens: refJson.val_tokens_scored });
  expect(r.tokens).toBe(refJson.val_tokens_scored);
  expect(Math.abs(r.nll - refJson.val_nll_first40k_tokens_512windows)).toBeLessThan(0.002);
}, 600_000);  // 40K tokens: seconds normally, minutes under the sanitizer build
