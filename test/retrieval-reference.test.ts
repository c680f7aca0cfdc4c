/**
 * The native BM25 search against the plain reference (test/helpers/reference-bm25.ts) on random
 * corpora and parameters the goldens do not cover: k1, b, exact lengths, the standard analyzer,
 * passages with no terms, ties, lists long enough for many blocks of 128, indexes built in memory
 * and on disk in many runs. The k best must be the reference's exactly: passages, order, float
 * scores. Deterministic (seeded).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AnalyzerName, Bm25Retriever, analyze } from '../lib';
import { referenceTopK } from './helpers/reference-bm25';
import { xorshift as rng } from './helpers/xorshift';

interface Case {
  seed: number;
  k1: number;
  b: number;
  luceneNorms: boolean;
  analyzer: AnalyzerName;
  passages: number;
  vocab: number;
}

const cases: Case[] = [
  { seed: 1, k1: 0.9, b: 0.4, luceneNorms: true, analyzer: 'english', passages: 3000, vocab: 400 },
  { seed: 2, k1: 1.7, b: 0.95, luceneNorms: false, analyzer: 'english', passages: 2500, vocab: 150 },
  { seed: 3, k1: 0.35, b: 0, luceneNorms: true, analyzer: 'standard', passages: 2000, vocab: 60 },
  { seed: 4, k1: 1.2, b: 0.75, luceneNorms: false, analyzer: 'standard', passages: 1500, vocab: 2000 },
];

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-bm25-ref-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test.each(cases)('random corpus %#: the k best equal the reference exactly (in memory and on disk)', async (c) => {
  const r = rng(c.seed);
  // Zipfian words, a few stop words and capitals, passage lengths from 0 to 120 words (so norms
  // above 24 are rounded), a title on some, and duplicated passages for ties.
  const word = () => {
    const i = Math.floor(c.vocab * r() ** 3);
    return r() < 0.05 ? 'the' : r() < 0.05 ? `W${i}` : `w${i}`;
  };
  const texts: Array<{ text: string; title?: string }> = [];
  for (let i = 0; i < c.passages; i++) {
    if (i % 97 === 5) {
      texts.push({ ...texts[i - 3]! });
      continue;
    }
    const n = i % 53 === 0 ? 0 : Math.floor(r() * 120);
    const text = n === 0 ? 'the and of' : Array.from({ length: n }, word).join(' ');
    texts.push(r() < 0.3 ? { text, title: `${word()} ${word()}` } : { text });
  }
  const terms = texts.map((t) => analyze(t.title !== undefined ? `${t.title}\n${t.text}` : t.text, c.analyzer));
  const params = { k1: c.k1, b: c.b, luceneNorms: c.luceneNorms, analyzer: c.analyzer };
  const options = { ...params, chunk: { words: 1e9, maxWordChars: 1e9 } };
  const memory = await Bm25Retriever.fromTexts(texts, options);
  const jsonl = path.join(tmp, `corpus-${c.seed}.jsonl`);
  fs.writeFileSync(jsonl, texts.map((t, i) => JSON.stringify({ id: `text[${i}]#0`, ...t })).join('\n'));
  const disk = await Bm25Retriever.buildIndex(jsonl, path.join(tmp, `index-${c.seed}.bm25`), { ...options, memoryMB: 0.05 });
  const queries = Array.from({ length: 24 }, (_, q) => Array.from({ length: 1 + (q % 12) }, word).join(' ') + (q % 5 === 0 ? ' absentword' : ''));
  for (const k of [1, 3, 10, 100]) {
    const [got, gotDisk] = [await memory.retrieveMany(queries, k), await disk.retrieveMany(queries, k)];
    queries.forEach((q, i) => {
      const want = referenceTopK(terms, analyze(q, c.analyzer), params, k);
      expect([q, got[i]!.map((p) => [p.id, p.score])]).toEqual([q, want.map((w) => [`text[${w.doc}]#0`, w.score])]);
      expect([q, gotDisk[i]!.map((p) => [p.id, p.score])]).toEqual([q, want.map((w) => [`text[${w.doc}]#0`, w.score])]);
    });
  }
  memory.close();
  disk.close();
});
