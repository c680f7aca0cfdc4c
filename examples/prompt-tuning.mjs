// Prompt tuning through the frozen embedded model (AI21's "Standing on the Shoulders of Giant
// Frozen Language Models", its baseline): 8 vectors in front of the text learn to steer the model,
// trained on tiny Shakespeare, to the same text lowercased. Nothing of the model changes.
//
//   node examples/prompt-tuning.mjs [--steps 60] [--corpus test/fixtures/tinyshakespeare.txt] [--out DIR] [--json]
//
// The setup of the design notes (§5.1): lowercased text split at 90% by characters; 4 windows of
// 96 tokens a step, Adam at lr 2e-2, seed 1234; the prompt starts from the embeddings of 8
// training tokens at offset 20,000, and goes after BOS ([BOS][P] text). Held out: 32 windows of
// 96 tokens spread evenly over the validation split, every token scored by the engine.
import fs from 'node:fs';
import { loadModel, nn, SoftPrompt } from 'jamba-node';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const steps = Number(arg('steps', 60));
const json = process.argv.includes('--json');
const corpus = arg('corpus', new URL('../test/fixtures/tinyshakespeare.txt', import.meta.url));
const log = (s) => { if (!json) console.log(s); };

const model = await loadModel();
const text = fs.readFileSync(corpus, 'utf8').toLowerCase();
const cut = Math.floor(0.9 * text.length);
const train = await model.tokenizer.encode(text.slice(0, cut), { addSpecialTokens: false });
const val = await model.tokenizer.encode(text.slice(cut), { addSpecialTokens: false });
const W = 96;
const at = (i) => Math.floor((i * val.length) / 32);
const heldOut = Array.from({ length: 32 }, (_, i) => val.slice(at(i), at(i) + W));

// Held-out NLL per token: every window scored after BOS, or after [BOS][P].
const bos = model.tokenizer.bosTokenId;
async function heldOutNll(inputsEmbeds) {
  const rs = await Promise.all(heldOut.map((w) => model.score(w, inputsEmbeds ? { inputsEmbeds } : { context: [bos] })));
  return -rs.reduce((a, r) => a + r.sum, 0) / rs.reduce((a, r) => a + r.logprobs.length, 0);
}

const prompt = await SoftPrompt.create(model, { numVirtualTokens: 8, init: { ids: train.slice(20000, 20008) }, position: 'after-bos' });
const optimizer = nn.adam([prompt.param], { lr: 2e-2 });
const rand = nn.seeded(1234);
const results = { noPrompt: await heldOutNll(), start: await heldOutNll(await prompt.inputsEmbeds()), steps: [] };
log(`held-out NLL: no prompt ${results.noPrompt.toFixed(4)}, text-initialised prompt ${results.start.toFixed(4)}`);
const t0 = performance.now();
let tokens = 0;
for (let step = 1; step <= steps; step++) {
  const batch = Array.from({ length: 4 }, () => {
    const o = Math.floor(rand() * (train.length - W));
    return { input: train.slice(o, o + W) };
  });
  const { loss, tokens: n } = await prompt.step(batch, optimizer);
  tokens += n;
  const s = (performance.now() - t0) / 1000;
  const row = { step, loss, seconds: s };
  if (step % 10 === 0 || step === steps) row.heldOut = await heldOutNll(await prompt.inputsEmbeds());
  results.steps.push(row);
  log(`step ${step}: loss ${loss.toFixed(4)}${row.heldOut !== undefined ? `, held-out ${row.heldOut.toFixed(4)}` : ''} (${(tokens / s).toFixed(0)} tokens/s)`);
}
results.seconds = (performance.now() - t0) / 1000;
results.final = results.steps.at(-1)?.heldOut ?? results.start;
const out = arg('out', undefined);
if (out) await prompt.save(out);
if (json) console.log(JSON.stringify(results));
else log(`after ${steps} steps: held-out ${results.final.toFixed(4)} (${(results.final - results.start).toFixed(4)} against the starting prompt), ${results.seconds.toFixed(1)} s`);
await model.dispose();
