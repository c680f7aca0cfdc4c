// Evaluate a long shared prefix once, snapshot it, and continue from it several times.
import { loadModel } from 'jamba-node';

const model = await loadModel();
const prefix = await model.tokenizer.encode('First Citizen:\nBefore we proceed any further, hear me speak.\n\n');
const seq = model.createSequence();
await seq.evaluate(prefix);
const snapshot = seq.snapshot();
const saved = snapshot.toBuffer(); // store it anywhere; model.snapshotFromBuffer(saved) reads it back
console.log(`state after ${snapshot.position} tokens: ${saved.length} bytes`);

for (const next of ['All:\n', 'MENENIUS:\n']) {
  const s = model.createSequence();
  s.restore(model.snapshotFromBuffer(saved));
  const ids = await model.tokenizer.encode(next, { addSpecialTokens: false });
  let logits = await s.evaluate(ids);
  const out = [];
  for (let i = 0; i < 24; i++) {
    let best = 0;
    for (let j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
    out.push(best);
    logits = await s.evaluate([best]);
  }
  console.log(`--- ${JSON.stringify(next)}\n${model.tokenizer.decode(out)}`);
  s.dispose();
}
seq.dispose();
await model.dispose();
