// A frozen reader (AI21's frozen-LM paper, §3): the frozen embedded model answers questions from
// passages the built-in BM25 retriever finds, steered by 8 prompt vectors trained on question–answer
// pairs with the loss on the answer only. The task: who speaks a given line of the play.
//
//   node examples/frozen-reader.mjs [--steps 30] [--held-out 32] [--corpus test/fixtures/tinyshakespeare.txt] [--json]
//
// The corpus's training 90% is indexed as 100-word passages. Questions come from its speeches:
// `Who says "<the speech's first line>"?` with the answer ` <SPEAKER>`; held-out questions are
// other speeches than the training ones. Adam at lr 2e-2, 4 questions a step, seed 7.
import fs from 'node:fs';
import { Bm25Retriever, FrozenReader, loadModel, nn, SoftPrompt } from 'jamba-node';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const steps = Number(arg('steps', 30));
const json = process.argv.includes('--json');
const corpus = arg('corpus', new URL('../test/fixtures/tinyshakespeare.txt', import.meta.url));
const log = (s) => { if (!json) console.log(s); };

const model = await loadModel();
const text = fs.readFileSync(corpus, 'utf8');
const train = text.slice(0, Math.floor(0.9 * text.length));
const retriever = await Bm25Retriever.fromTexts([{ text: train, source: 'plays' }]);

// Speeches: a speaker's name in capitals on its own line, then the speech.
const questions = [];
for (const m of train.matchAll(/(?:^|\n\n)([A-Z][A-Za-z ]+):\n([^\n]+)/g)) {
  const [, speaker, line] = m;
  if (line.split(/\s+/).length >= 6) questions.push({ question: `Q: Who says "${line.trim()}"?\nA:`, answer: ` ${speaker}` });
}
const rand = nn.seeded(7);
const shuffled = questions.map((q) => [rand(), q]).sort((a, b) => a[0] - b[0]).map(([, q]) => q);
const heldOut = shuffled.slice(0, Number(arg('held-out', 32))), pool = shuffled.slice(32);

const prompt = await SoftPrompt.create(model, { numVirtualTokens: 8, init: { text: 'The speaker of the line:' }, seed: 7 });
const reader = new FrozenReader(model, { retriever, prompt, passages: 1, maxPassageTokens: 192 });
const optimizer = nn.adam([prompt.param], { lr: 2e-2 });
const results = { questions: questions.length, withoutPrompt: (await reader.evaluateWithoutPrompt(heldOut)).loss, start: (await reader.evaluate(heldOut)).loss, steps: [] };
log(`${questions.length} questions; held-out answer NLL from the same passages: no prompt ${results.withoutPrompt.toFixed(4)}, initial prompt ${results.start.toFixed(4)}`);
const t0 = performance.now();
for (let step = 1; step <= steps; step++) {
  const batch = Array.from({ length: 4 }, () => pool[Math.floor(rand() * pool.length)]);
  const { loss } = await reader.step(batch, optimizer);
  const row = { step, loss, seconds: (performance.now() - t0) / 1000 };
  if (step % 10 === 0 || step === steps) row.heldOut = (await reader.evaluate(heldOut)).loss;
  results.steps.push(row);
  log(`step ${step}: loss ${loss.toFixed(4)}${row.heldOut !== undefined ? `, held-out ${row.heldOut.toFixed(4)}` : ''}`);
}
results.final = results.steps.at(-1)?.heldOut ?? results.start;
results.seconds = (performance.now() - t0) / 1000;
if (json) console.log(JSON.stringify(results));
else {
  log(`after ${steps} steps: held-out answer NLL ${results.final.toFixed(4)} (no prompt: ${results.withoutPrompt.toFixed(4)}), ${results.seconds.toFixed(1)} s`);
  for (const qa of heldOut.slice(0, 3)) log(`${qa.question.split('\n')[0]} → ${JSON.stringify(await reader.answer(qa.question, { maxTokens: 6 }))} (${qa.answer.trim()})`);
}
await model.dispose();
