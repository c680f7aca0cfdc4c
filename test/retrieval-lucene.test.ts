/**
 * The built-in BM25 retrieval against real Lucene 8 (the Pyserini setup: EnglishAnalyzer,
 * BM25Similarity(0.9, 0.4), one segment, bag-of-words queries), on 3,487 passages of real, mixed
 * text (test/fixtures/retrieval: licence and copyright notices with names in many scripts, e-mail
 * addresses, URLs, version numbers, symbols; READMEs with Markdown, code identifiers and emoji):
 * the analyzer's terms passage by passage, the Porter stems of the whole vocabulary, and the top
 * 10 of 200 queries, ids, order and scores, for every index kind. The goldens were made by
 * scripts/lucene/regenerate.sh (CI makes them again and compares wherever Lucene is installed).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { Bm25Retriever, Passage, analyze } from '../lib';
import { retrievalNative } from '../lib/retrieval/native-index';
import { FIXTURES } from './helpers/paths';

const DIR = path.join(FIXTURES, 'retrieval');
const unescape = (s: string) => s.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c === 't' ? '\t' : c));
const tsv = (file: string) => fs.readFileSync(path.join(DIR, file), 'utf8').split('\n').filter(Boolean).map((l) => {
  const tab = l.indexOf('\t');
  return [l.slice(0, tab), unescape(l.slice(tab + 1))] as const;
});
const gz = (file: string) => zlib.gunzipSync(fs.readFileSync(path.join(DIR, file))).toString('utf8').split('\n').slice(0, -1);
const corpus = tsv('corpus.tsv'), queries = tsv('queries.tsv');

test("the analyzer's terms equal Lucene EnglishAnalyzer's, passage by passage", () => {
  const golden = gz('lucene-terms.txt.gz');
  expect(golden).toHaveLength(corpus.length);
  const differ: string[] = [];
  let terms = 0;
  corpus.forEach(([id, text], i) => {
    const want = golden[i] ? golden[i]!.split(' ') : [];
    terms += want.length;
    if (analyze(text).join(' ') !== want.join(' ')) differ.push(id);
  });
  expect(terms).toBeGreaterThan(300_000);
  expect(differ).toEqual([]);
});

test("the Porter stemmer equals Lucene's on every word of the corpus and of tiny Shakespeare", () => {
  const lines = gz('lucene-stems.txt.gz');
  expect(lines.length).toBeGreaterThan(40_000);
  const differ = lines.map((l) => l.split(' ')).filter(([word, stem]) => retrievalNative().porterStem(word!) !== stem);
  expect(differ).toEqual([]);
});

/** The top 10 of every query against the goldens: identical ids and order, and Lucene's float scores exactly. */
async function checkTop10(r: Bm25Retriever, idOf: (p: Passage) => string): Promise<void> {
  const golden = fs.readFileSync(path.join(DIR, 'lucene-top10.jsonl'), 'utf8').split('\n').filter(Boolean)
    .map((l) => JSON.parse(l) as { query: string; hits: Array<[string, number]> });
  expect(golden).toHaveLength(queries.length);
  for (const [i, [qid, text]] of queries.entries()) {
    const got = await r.retrieve(text, 10);
    const want = golden[i]!.hits;
    expect([qid, got.map(idOf)]).toEqual([qid, want.map(([id]) => id)]);
    // Float.toString's digits identify the float: rounded back, the scores must be those bits.
    expect([qid, got.map((p) => p.score)]).toEqual([qid, want.map(([, s]) => Math.fround(s))]);
  }
}

test('the memory index ranks and scores every query as Lucene does', async () => {
  const r = await Bm25Retriever.fromTexts(corpus.map(([id, text]) => ({ text, source: id })), { chunk: { words: 1e9, maxWordChars: 1e9 } });
  expect(r.params).toEqual({ k1: 0.9, b: 0.4, analyzer: 'english', luceneNorms: true });
  await checkTop10(r, (p) => String(p.metadata!.source));
});

test('the disk index, built in several sorted runs and merged, ranks and scores every query as Lucene does', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-lucene-'));
  try {
    const jsonl = path.join(dir, 'corpus.jsonl');
    fs.writeFileSync(jsonl, corpus.map(([id, text]) => JSON.stringify({ id, text })).join('\n'));
    const file = path.join(dir, 'index.bm25');
    // 1 MiB of postings at a time: the corpus's ~1.3 M postings make several runs to merge.
    const r = await Bm25Retriever.buildIndex(jsonl, file, { chunk: { words: 1e9, maxWordChars: 1e9 }, memoryMB: 1 });
    expect(r.kind).toBe('disk');
    await checkTop10(r, (p) => p.id);
    r.close();
    const again = await Bm25Retriever.load(file);
    expect(again.params).toEqual({ k1: 0.9, b: 0.4, analyzer: 'english', luceneNorms: true });
    await checkTop10(again, (p) => p.id);
    again.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
