// Stream a continuation from the embedded model: node examples/generate.mjs "ROMEO:"
import { loadModel } from 'jamba-node';

const model = await loadModel();
const signal = AbortSignal.timeout(30_000);
for await (const piece of model.generate(process.argv[2] ?? 'ROMEO:\n', { maxTokens: 80, temperature: 0.8, seed: 1, signal })) {
  process.stdout.write(piece);
}
process.stdout.write('\n');
await model.dispose();
