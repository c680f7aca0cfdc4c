// Input-dependent prompt tuning (ID-PT, AI21's frozen-LM paper §2) against prompt tuning, through
// the frozen embedded model, on a stream that mixes three styles of the same text (as written,
// lowercased, UPPERCASED). Each example's input (32 tokens) tells its style; the target is the next
// 64 tokens. One soft prompt must serve all three styles; the generator reads the input (the
// model's residual stream after layer 2, pooled by 8 learned queries, then a SwiGLU MLP) and
// writes a prompt for it. Both have 8 prompt vectors, start from the same ones, and train alike.
//
//   node examples/input-dependent-prompt.mjs [--steps 40] [--held-out 24] [--corpus test/fixtures/tinyshakespeare.txt] [--json]
import fs from 'node:fs';
import { loadModel, nn, PromptGenerator, SoftPrompt } from 'jamba-node';

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
const train = text.slice(0, cut), val = text.slice(cut);
const styles = [(s) => s, (s) => s.toLowerCase(), (s) => s.toUpperCase()];
const rand = nn.seeded(7);
// An example: 600 characters from `from`, in a random style, cut into 32 input and 64 target tokens.
async function example(source, from) {
  const ids = await model.tokenizer.encode(styles[Math.floor(rand() * 3)](source.slice(from, from + 600)), { addSpecialTokens: false });
  return { input: ids.slice(0, 32), target: ids.slice(32, 96) };
}
const nHeld = Number(arg('held-out', 24));
const heldOut = await Promise.all(Array.from({ length: nHeld }, (_, i) => example(val, Math.floor((i * (val.length - 700)) / nHeld))));

const n = 8;
const init = { ids: (await model.tokenizer.encode(train.slice(20000, 20100), { addSpecialTokens: false })).slice(0, n) };
const soft = await SoftPrompt.create(model, { numVirtualTokens: n, init });
const generator = await PromptGenerator.create(model, { numVirtualTokens: n, init, readLayer: 2 });
const softOpt = nn.adam([soft.param], { lr: 2e-2 }), genOpt = nn.adam(generator.params, { lr: 2e-2 });
const evaluate = async () => ({ soft: (await soft.evaluate(heldOut)).loss, generator: (await generator.evaluate(heldOut)).loss });
const results = { start: await evaluate(), steps: [] };
log(`held-out NLL at the start (the same prompt): ${results.start.soft.toFixed(4)}`);
const t0 = performance.now();
for (let step = 1; step <= steps; step++) {
  const batch = await Promise.all(Array.from({ length: 4 }, () => example(train, Math.floor(rand() * (train.length - 700)))));
  const a = await soft.step(batch, softOpt), b = await generator.step(batch, genOpt);
  const row = { step, soft: a.loss, generator: b.loss, seconds: (performance.now() - t0) / 1000 };
  if (step % 10 === 0 || step === steps) row.heldOut = await evaluate();
  results.steps.push(row);
  if (row.heldOut) log(`step ${step}: held-out NLL soft prompt ${row.heldOut.soft.toFixed(4)}, generator ${row.heldOut.generator.toFixed(4)}`);
}
results.final = results.steps.at(-1)?.heldOut ?? results.start;
results.seconds = (performance.now() - t0) / 1000;
if (json) console.log(JSON.stringify(results));
else log(`after ${steps} steps: soft prompt ${results.final.soft.toFixed(4)}, generator ${results.final.generator.toFixed(4)} (${results.seconds.toFixed(1)} s for both)`);
await model.dispose();
