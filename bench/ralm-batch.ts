/**
 * RALM generation with a large index, one sequence and several at once (`npm run bench:ralm-batch
 * -- [--passages N] [--index FILE] [--tokens T] [--latency MS]`, default 1,000,000 passages, 64
 * tokens): the
 * embedded model generates from 8 prompts, retrieving every 4 tokens with 32-token queries from a
 * BM25 index of N passages of 100 words drawn from tiny Shakespeare's own word frequencies (so the
 * queries, which are the model's Shakespeare, meet lists as long as real text gives them). Reports
 * tokens/s for plain generation, for RALM with batched retrieval (sequences that reach a stride
 * together go out as one retrieveMany, searched in parallel off the JS thread while the scheduler
 * runs the other sequences) and for RALM with sequential retrieval (one query at a time), at batch 1
 * (the prompts one after another) and 8 (completeBatch). Checks that every way generates the same
 * tokens. Builds the index under $TMPDIR (or uses --index) and removes what it built. With
 * `--latency MS`, every call to the retriever (a retrieve or a retrieveMany) first waits MS: a remote
 * cluster's round trip, where one _msearch replaces a request per sequence.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bm25Retriever, GenerateOptions, JambaModel, Passage, Retriever, loadModel } from '../lib';
import { CORPUS } from '../test/helpers/paths';
import { xorshift as rng } from '../test/helpers/xorshift';

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const N = Number(flag('passages') ?? 1_000_000), TOKENS = Number(flag('tokens') ?? 64), LATENCY_MS = Number(flag('latency') ?? 0);
const PROMPTS = ['ROMEO:\n', 'KING HENRY V:\nOnce more', 'First Citizen:\nWe are accounted poor', 'JULIET:\nWhat', 'GLOUCESTER:\nNow is the',
  'MENENIUS:\nWhy, masters', 'LADY CAPULET:\nWell, think', 'BRUTUS:\nThe people'];

/** N passages of 100 words drawn from tiny Shakespeare's unigram frequencies, as JSONL. */
function writeCorpus(file: string): void {
  const words = fs.readFileSync(CORPUS, 'utf8').split(/\s+/).filter(Boolean);
  const r = rng(3);
  const out = fs.openSync(file, 'w');
  let lines: string[] = [];
  for (let i = 0; i < N; i++) {
    lines.push(JSON.stringify({ id: String(i), text: Array.from({ length: 100 }, () => words[Math.floor(r() * words.length)]).join(' ') }));
    if (lines.length === 10_000 || i === N - 1) {
      fs.writeSync(out, `${lines.join('\n')}\n`);
      lines = [];
    }
  }
  fs.closeSync(out);
}

/** The retriever behind a round trip of LATENCY_MS per call. */
function remote(r: Bm25Retriever): Retriever {
  if (!LATENCY_MS) return r;
  const trip = () => new Promise((res) => setTimeout(res, LATENCY_MS));
  return {
    retrieve: async (q, k, o) => (await trip(), r.retrieve(q, k, o)),
    retrieveMany: async (qs, k, o) => (await trip(), r.retrieveMany(qs, k, o)),
  };
}

/** The retriever with `retrieve` alone, one query at a time: what retrieval was before batching. */
function sequential(r: Retriever): Retriever {
  let last: Promise<unknown> = Promise.resolve();
  return {
    retrieve: (q, k, o) => {
      const next = last.then(() => r.retrieve(q, k, o));
      last = next.catch(() => undefined);
      return next as Promise<Passage[]>;
    },
  };
}

async function rate(model: JambaModel, batch: number, options: GenerateOptions): Promise<{ tokPerS: number; tokens: number[][] }> {
  model.passageCache?.clear();
  const t0 = performance.now();
  const tokens: number[][] = [];
  for (let i = 0; i < PROMPTS.length; i += batch) {
    const results = await model.completeBatch(PROMPTS.slice(i, i + batch), options);
    tokens.push(...results.map((x) => x.tokens));
  }
  const n = tokens.reduce((a, t) => a + t.length, 0);
  return { tokPerS: n / ((performance.now() - t0) / 1000), tokens };
}

async function main(): Promise<void> {
  const given = flag('index');
  const dir = given ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-ralm-batch-'));
  try {
    let file = given;
    let buildS = 0;
    if (!file) {
      const corpus = path.join(dir!, 'passages.jsonl');
      writeCorpus(corpus);
      file = path.join(dir!, 'index.bm25');
      const t0 = performance.now();
      (await Bm25Retriever.buildIndex(corpus, file)).close();
      buildS = (performance.now() - t0) / 1000;
      fs.rmSync(corpus);
    }
    const index = await Bm25Retriever.load(file);
    const served = remote(index);
    const model = await loadModel();
    const base = { maxTokens: TOKENS, temperature: 0 };
    const ralm = (retriever: Retriever): GenerateOptions => ({ ...base, retrieval: { retriever, stride: 4, queryTokens: 32 } });
    await rate(model, 8, ralm(index));  // warm-up: the index's pages, the model's buffers
    const rows: string[] = [];
    let reference: number[][] | undefined;
    const ROUNDS = 3;
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    for (const batch of [1, 8]) {
      // Rounds alternate the three ways; each rate is the median of its rounds.
      const rates: Record<'plain' | 'seq' | 'batched', number[]> = { plain: [], seq: [], batched: [] };
      for (let round = 0; round < ROUNDS; round++) {
        rates.plain.push((await rate(model, batch, base)).tokPerS);
        const seq = await rate(model, batch, ralm(sequential(served)));
        const batched = await rate(model, batch, ralm(served));
        reference ??= seq.tokens;
        for (const x of [seq, batched]) if (JSON.stringify(x.tokens) !== JSON.stringify(reference)) throw new Error(`batch ${batch}: RALM generated other tokens`);
        rates.seq.push(seq.tokPerS);
        rates.batched.push(batched.tokPerS);
      }
      const [p, q, b] = [median(rates.plain), median(rates.seq), median(rates.batched)];
      rows.push(`| ${batch} | ${p.toFixed(0)} | ${q.toFixed(1)} | ${b.toFixed(1)} | ${(b / q).toFixed(2)}× |`);
    }
    // The retrieval alone: 64 of the generated texts' 32-token queries, one at a time and as one retrieveMany.
    const probe = Array.from({ length: 64 }, (_, i) => model.tokenizer.decode(reference![i % 8]!.slice(i >> 3, (i >> 3) + 32)));
    let t0 = performance.now();
    for (const q of probe) await index.retrieve(q, 1);
    const queryMs = (performance.now() - t0) / probe.length;
    t0 = performance.now();
    for (let i = 0; i < probe.length; i += 8) await index.retrieveMany(probe.slice(i, i + 8), 1);
    const manyMs = (performance.now() - t0) / probe.length;
    console.log(`**${os.cpus()[0]?.model ?? 'CPU'}** (${os.cpus().length} threads), Node ${process.version}; the embedded model, ${PROMPTS.length} prompts × ${TOKENS} tokens, ` +
                `greedy, medians of ${ROUNDS} alternating rounds; retrieval every 4 tokens, 32-token queries, top 1, from ${index.size.toLocaleString('en')} passages (${(index.bytes / 2 ** 20).toFixed(0)} MiB` +
                `${buildS ? `, built in ${buildS.toFixed(0)} s` : ''}); a query alone ${queryMs.toFixed(1)} ms, in a retrieveMany of 8 ${manyMs.toFixed(1)} ms a query` +
                `${LATENCY_MS ? `; every retriever call behind a ${LATENCY_MS} ms round trip` : ''}. Every way generates the same tokens.\n`);
    console.log('| sequences at once | plain tok/s | RALM, sequential retrieval, tok/s | RALM, batched retrieval, tok/s | batched / sequential |\n|---|---|---|---|---|');
    console.log(rows.join('\n'));
    index.close();
    await model.dispose();
  } finally {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main();
