// Several prompts at once: they share forward passes, and each result equals running it alone.
import { loadModel } from 'jamba-node';

const model = await loadModel();
const prompts = ['ROMEO:\n', 'JULIET:\n', 'KING HENRY:\n'];
const results = await model.completeBatch(prompts, { maxTokens: 32, temperature: 0 });
results.forEach((r, i) => console.log(`--- ${JSON.stringify(prompts[i])} (${r.finishReason})\n${r.text}`));
console.log(model.stats);
await model.dispose();
