/**
 * `npm run bench:ralm [-- --tokens N] [-- --window W] [-- --json]`: In-Context RALM on the embedded
 * model. The corpus is the training 90% of tiny Shakespeare (BM25 over 100-word passages), the
 * text its validation 10%. Reports token- and word-level perplexity with and without retrieval
 * under the paper's protocol (stride 4, 32-token queries, passages of ≤ 256 tokens) on the same
 * tokens, in both input layouts ('bos' and the paper's), passages sharing 32 words in a row with
 * the evaluated text excluded (and counted), the time each took, and generation speed with
 * retrieval (stride 4) against plain generation.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Bm25Retriever, loadModel, ralmPerplexity } from '../lib';
import { CORPUS } from '../test/helpers/paths';

const argv = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const json = argv.includes('--json');
const log = (s: string) => { if (!json) process.stderr.write(`${s}\n`); };
const now = () => Number(process.hrtime.bigint()) / 1e9;

async function main() {
  const model = await loadModel();
  const text = fs.readFileSync(CORPUS, 'utf8');
  const all = await model.tokenizer.encode(text, { addSpecialTokens: false });
  const split = Math.floor(0.9 * all.length);
  let t0 = now();
  const retriever = await Bm25Retriever.fromTexts([{ text: model.tokenizer.decode(all.slice(0, split)), source: 'train' }]);
  const indexS = now() - t0;
  log(`indexed ${retriever.size} passages in ${indexS.toFixed(2)} s`);
  const val = all.slice(split);
  const opts = { window: flag('window', 512), stride: 4, queryTokens: 32, maxPassageTokens: 256, maxTokens: flag('tokens', 4096) };
  const valText = model.tokenizer.decode(val.slice(0, opts.maxTokens));
  const evals = [];
  for (const layout of ['bos', 'paper'] as const) {
    const common = { ...opts, layout, text: valText };
    const plain = await ralmPerplexity(model, val, common);
    const withR = await ralmPerplexity(model, val, { ...common, retriever, exclude: { overlapText: valText } });
    log(`${layout}: word perplexity ${plain.wordPerplexity!.toFixed(4)} → ${withR.wordPerplexity!.toFixed(4)} with retrieval`);
    evals.push({ layout, plain, withR });
  }
  // The retriever alone: 32-token queries from the validation text, one after another.
  const queries = Array.from({ length: 200 }, (_, i) => model.tokenizer.decode(val.slice(i * 16, i * 16 + 32)));
  t0 = now();
  for (const q of queries) await retriever.retrieve(q, 1);
  const queryMs = ((now() - t0) / queries.length) * 1000;

  // Generation: the same prompts, 128 tokens each, greedy, one at a time.
  const prompts = ['ROMEO:\n', 'KING HENRY V:\nOnce more', 'First Citizen:\nWe are accounted poor', 'JULIET:\nWhat'];
  const gen = async (retrieval: boolean) => {
    let tokens = 0;
    const start = now();
    for (const p of prompts) {
      const r = await model.complete(p, { maxTokens: 128, temperature: 0, ...(retrieval ? { retrieval: { retriever } } : {}) });
      tokens += r.tokens.length;
    }
    return tokens / (now() - start);
  };
  await gen(false);  // warm-up
  const plainRate = await gen(false);
  model.passageCache?.clear();
  const ralmCold = await gen(true);
  const ralmWarm = await gen(true);  // passages retrieved before now come from the passage cache

  const rows = evals.flatMap(({ layout, plain, withR }) => [
    { case: `${layout} layout: perplexity without retrieval (${plain.tokens} validation tokens, ${plain.words} words, window ${opts.window}, stride 4)`,
      value: `word ${plain.wordPerplexity!.toFixed(4)}, token ${plain.perplexity.toFixed(4)}`, note: `${(plain.ms / 1000).toFixed(1)} s` },
    { case: `${layout} layout: perplexity with BM25 retrieval (same tokens)`, value: `word ${withR.wordPerplexity!.toFixed(4)}, token ${withR.perplexity.toFixed(4)}`,
      note: `${(withR.ms / 1000).toFixed(1)} s; ${withR.retrievals} retrievals, ${withR.cachedPassageStates} passage states from the cache, ${withR.excluded} passages excluded (32 words shared with the text)` },
    { case: `${layout} layout: change with retrieval`, value: `${(100 * (withR.wordPerplexity! / plain.wordPerplexity! - 1)).toFixed(2)}% (word level)`,
      note: `evaluation time ×${(withR.ms / plain.ms).toFixed(2)}` },
  ]).concat([
    { case: 'generation, plain (greedy, 4 × 128 tokens)', value: `${plainRate.toFixed(0)} tok/s`, note: '' },
    { case: 'generation with retrieval every 4 tokens, passage cache cold', value: `${ralmCold.toFixed(0)} tok/s`, note: `${(plainRate / ralmCold).toFixed(2)}× slower than plain` },
    { case: 'generation with retrieval every 4 tokens, passage cache warm', value: `${ralmWarm.toFixed(0)} tok/s`, note: `${(plainRate / ralmWarm).toFixed(2)}× slower than plain` },
    { case: 'BM25 index of the training 90%', value: `${retriever.size} passages`, note: `built in ${indexS.toFixed(2)} s` },
    { case: 'BM25 query of 32 tokens (top 1)', value: `${queryMs.toFixed(2)} ms`, note: '' },
  ]);
  if (json) process.stdout.write(`${JSON.stringify(rows)}\n`);
  else process.stdout.write(`| case | value | note |\n|---|---|---|\n${rows.map((r) => `| ${r.case} | ${r.value} | ${r.note} |`).join('\n')}\n`);
  await model.dispose();
}

void main();
