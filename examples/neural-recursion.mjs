// Neural recursion through the frozen embedded model (AI21's frozen-LM paper, §4.2): pass 1 reads
// the text, a small connector maps each of its final hidden states to an input row of pass 2, and
// pass 2 (the same frozen model, given no token embeddings at all) predicts the next token. Only
// the connector trains: W₂·silu(W₁·f + b₁) + b₂ with 128 hidden units.
//
//   node examples/neural-recursion.mjs [--steps 40] [--corpus test/fixtures/tinyshakespeare.txt] [--out DIR] [--json]
//
// The setup of the design notes (§5.1): text split at 90% by characters; 4 windows of 96 tokens a
// step; Adam at lr 2e-3; seed 99 (W₁ ~ N(0, 1/H), W₂ ~ N(0, (0.05/√128)²)). Held out: 24 windows
// of 96 tokens spread evenly over the validation split.
import fs from 'node:fs';
import { loadModel, nn, RecursiveLM } from 'jamba-node';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const steps = Number(arg('steps', 40));
const json = process.argv.includes('--json');
const corpus = arg('corpus', new URL('../test/fixtures/tinyshakespeare.txt', import.meta.url));
const log = (s) => { if (!json) console.log(s); };

const model = await loadModel();
const text = fs.readFileSync(corpus, 'utf8');
const cut = Math.floor(0.9 * text.length);
const train = await model.tokenizer.encode(text.slice(0, cut), { addSpecialTokens: false });
const val = await model.tokenizer.encode(text.slice(cut), { addSpecialTokens: false });
const W = 96;
const at = (i) => Math.floor((i * val.length) / 24);
const heldOut = Array.from({ length: 24 }, (_, i) => val.slice(at(i), at(i) + W));

// One pass of the frozen model on the same windows, for comparison.
const bos = model.tokenizer.bosTokenId;
const single = await Promise.all(heldOut.map((w) => model.score(w, { context: [bos] })));
const results = { singlePass: -single.reduce((a, r) => a + r.sum, 0) / single.reduce((a, r) => a + r.logprobs.length, 0), steps: [] };

const lm = new RecursiveLM(model, { hiddenUnits: 128, seed: 99 });
const optimizer = nn.adam(lm.connector.params, { lr: 2e-3 });
results.start = (await lm.evaluate(heldOut)).loss;
log(`held-out NLL: one pass ${results.singlePass.toFixed(4)}; pass 2 through the untrained connector ${results.start.toFixed(4)}`);
const rand = nn.seeded(99);
const t0 = performance.now();
for (let step = 1; step <= steps; step++) {
  const batch = Array.from({ length: 4 }, () => {
    const o = Math.floor(rand() * (train.length - W));
    return train.slice(o, o + W);
  });
  const { loss } = await lm.step(batch, optimizer);
  const row = { step, loss, seconds: (performance.now() - t0) / 1000 };
  if (step % 10 === 0 || step === steps) row.heldOut = (await lm.evaluate(heldOut)).loss;
  results.steps.push(row);
  log(`step ${step}: loss ${loss.toFixed(4)}${row.heldOut !== undefined ? `, held-out ${row.heldOut.toFixed(4)}` : ''}`);
}
results.seconds = (performance.now() - t0) / 1000;
results.final = results.steps.at(-1)?.heldOut ?? results.start;
const out = arg('out', undefined);
if (out) lm.save(out);
if (json) console.log(JSON.stringify(results));
else {
  log(`after ${steps} steps: pass-2 held-out ${results.final.toFixed(4)}, ${results.seconds.toFixed(1)} s`);
  log(`generated: ${JSON.stringify((await lm.generate('ROMEO:\n', { maxTokens: 32 })).text)}`);
}
await model.dispose();
