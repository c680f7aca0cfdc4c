// In-Context RALM over a folder or file of text: node examples/ralm.mjs CORPUS "prompt"
// Every 4 generated tokens, the last 32 tokens query a BM25 index and the best passage goes in front.
import { Bm25Retriever, loadModel } from 'jamba-node';

const [corpus, prompt = 'KING HENRY V:\n'] = process.argv.slice(2);
const retriever = await Bm25Retriever.fromPath(corpus);
const model = await loadModel();
const result = await model.complete(prompt, {
  maxTokens: 64, temperature: 0, retrieval: { retriever, stride: 4, queryTokens: 32, rerank: { k: 4 } },
});
process.stdout.write(`${prompt}${result.text}\n`);
for (const r of result.retrievals.filter((x) => !x.kept)) console.log(`--- at token ${r.atToken}: ${r.passage?.id ?? 'no passage'}`);
await model.dispose();
