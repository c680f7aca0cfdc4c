/**
 * The built-in retriever: chunking, BM25 scores against a hand computation of the formula,
 * saved indexes, progress and abort, and bad corpora refused with errors that name the file.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AbortError, Bm25Retriever, CorpusError, InvalidArgumentError, chunkText } from '../lib';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-retrieval-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const words = (n: number, w = (i: number) => `w${i}`) => Array.from({ length: n }, (_, i) => w(i)).join(' ');

describe('chunking', () => {
  test('passages of N words, keeping the text between their first and last word as written', async () => {
    const text = `  ${words(120)}\n\n${words(130, (i) => `v${i}`)}  `;
    const p = await chunkText(text, { words: 100 });
    expect(p.map((x) => x.split(/\s+/).length)).toEqual([100, 100, 50]);
    expect(p[1]).toContain('w119\n\nv0');
    expect(p.join(' ').split(/\s+/)).toEqual(text.trim().split(/\s+/));
  });

  test('a huge line and a huge word stay bounded', async () => {
    const blob = 'x'.repeat(25_000);
    const p = await chunkText(`${words(50)} ${blob}`, { words: 100, maxWordChars: 100 });
    expect(p).toHaveLength(3);
    expect(Math.max(...p.map((x) => x.length))).toBeLessThanOrEqual(100 * 101);
    expect(p.join('').replace(/\s/g, '')).toBe(`${words(50).replace(/\s/g, '')}${blob}`);
  });

  test('with a token counter, passages over maxTokens are split until they fit', async () => {
    const count = async (t: string) => t.length;  // one "token" per character
    const p = await chunkText(words(100), { words: 100, maxTokens: 60, countTokens: count });
    expect(p.every((x) => x.length <= 60)).toBe(true);
    expect(p.join(' ')).toBe(words(100));
  });

  test('bad options are refused by name', async () => {
    await expect(chunkText('a b', { words: 0 })).rejects.toThrow(/chunk.words must be a positive integer/);
    await expect(chunkText('a b', { maxTokens: 5 })).rejects.toThrow(/comes with a countTokens function/);
  });
});

describe('BM25', () => {
  const corpus = [
    'the cat sat on the mat',
    'the dog chased the cat around the garden',
    'a bird sang in the garden at dawn',
    'dogs and cats and birds',
    'the mat was red',
  ];

  /**
   * BM25 written out from its definition (Lucene's idf), over lower-cased word tokens, with
   * MiniSearch's one difference: a passage's length is its number of distinct terms.
   */
  function bm25(query: string, k1: number, b: number): number[] {
    const toks = corpus.map((d) => d.toLowerCase().split(/[^a-z]+/).filter(Boolean));
    const len = (t: string[]) => new Set(t).size;
    const avg = toks.reduce((a, t) => a + len(t), 0) / toks.length;
    const q = query.toLowerCase().split(/[^a-z]+/).filter(Boolean);
    return toks.map((t) => q.reduce((s, term) => {
      const tf = t.filter((x) => x === term).length;
      if (tf === 0) return s;
      const df = toks.filter((d) => d.includes(term)).length;
      const idf = Math.log(1 + (toks.length - df + 0.5) / (df + 0.5));
      return s + idf * (tf * (k1 + 1)) / (tf + k1 * (1 - b + (b * len(t)) / avg));
    }, 0));
  }

  test.each([[0.9, 0.4], [1.2, 0.75]])('scores and ranks by BM25 (k1 %p, b %p)', async (k1, b) => {
    const r = await Bm25Retriever.fromTexts(corpus, { k1, b });
    for (const query of ['cat mat', 'garden dog', 'the red mat', 'birds']) {
      const want = bm25(query, k1, b).map((score, i) => ({ i, score })).filter((x) => x.score > 0)
        .sort((x, y) => y.score - x.score || x.i - y.i);
      const got = await r.retrieve(query, 10);
      expect(got.map((p) => p.id)).toEqual(want.map((w) => `text[${w.i}]#0`));
      got.forEach((p, j) => expect(p.score).toBeCloseTo(want[j]!.score, 10));
    }
    expect((await r.retrieve('cat', 1)).map((p) => p.text)).toEqual([corpus[0]]);
    expect(await r.retrieve('zebra', 3)).toEqual([]);
  });

  test('files and folders are chunked and indexed; passages name their source', async () => {
    const dir = path.join(tmp, 'docs');
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'a.txt'), `${words(150)} unicorn`);
    fs.writeFileSync(path.join(dir, 'sub', 'b.md'), 'A passage about dragons.');
    fs.writeFileSync(path.join(dir, '.hidden'), 'dragons dragons dragons');
    const r = await Bm25Retriever.fromPath(dir);
    expect(r.size).toBe(3);
    const [hit] = await r.retrieve('unicorn', 1);
    expect(hit!.id).toBe(`${path.join(dir, 'a.txt')}#1`);
    expect(hit!.metadata).toEqual({ source: path.join(dir, 'a.txt') });
    expect((await r.retrieve('dragons', 5)).map((p) => p.id)).toEqual([`${path.join(dir, 'sub', 'b.md')}#0`]);
  });

  test('an index saved and loaded gives the same results; a damaged one is refused by name', async () => {
    const r = await Bm25Retriever.fromTexts(corpus.map((text, i) => ({ text, title: `Doc ${i}` })));
    const file = path.join(tmp, 'index.json');
    r.save(file);
    const back = Bm25Retriever.load(file);
    for (const q of ['cat', 'garden dawn', 'Doc 3']) expect(await back.retrieve(q, 5)).toEqual(await r.retrieve(q, 5));
    expect((await back.retrieve('dawn', 1))[0]!.title).toBe('Doc 2');
    const bad = path.join(tmp, 'bad.json');
    for (const [content, msg] of [
      ['{"format":"jamba-bm25"', /bad.json: is not a saved index \(not JSON/],
      ['{"format":"other"}', /bad.json: is not a saved jamba-bm25 index/],
      [JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), version: 9 }), /bad.json: has index version 9/],
      [JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), passages: [{ id: 1 }] }), /bad.json: has a malformed passage list/],
      [JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), index: { nonsense: true } }), /bad.json: has a malformed index/],
    ] as Array<[string, RegExp]>) {
      fs.writeFileSync(bad, content);
      expect(() => Bm25Retriever.load(bad)).toThrow(msg);
    }
    expect(() => Bm25Retriever.load(path.join(tmp, 'missing.json'))).toThrow(CorpusError);
  });

  test('indexing reports progress and stops on abort', async () => {
    const texts = Array.from({ length: 4500 }, (_, i) => `document ${i} about topic${i % 7}`);
    const seen: Array<[number, number]> = [];
    const r = await Bm25Retriever.fromTexts(texts, { onProgress: (d, t) => seen.push([d, t]) });
    expect(r.size).toBe(4500);
    expect(seen).toEqual([[2000, 4500], [4000, 4500], [4500, 4500]]);
    const ac = new AbortController();
    const p = Bm25Retriever.fromTexts(texts, { signal: ac.signal, onProgress: () => ac.abort() });
    await expect(p).rejects.toThrow(AbortError);
  });

  test('bad corpora and arguments get clear errors', async () => {
    const empty = path.join(tmp, 'empty.txt');
    fs.writeFileSync(empty, ' \n\t\n');
    await expect(Bm25Retriever.fromPath(empty)).rejects.toThrow(`${empty}: has no text to index`);
    const bin = path.join(tmp, 'model.bin');
    fs.writeFileSync(bin, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 1, 2]));
    await expect(Bm25Retriever.fromPath(bin)).rejects.toThrow(`${bin}: is a binary file`);
    const latin1 = path.join(tmp, 'latin1.txt');
    fs.writeFileSync(latin1, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x6f, 0x6b]));
    await expect(Bm25Retriever.fromPath(latin1)).rejects.toThrow(`${latin1}: is not UTF-8 text`);
    await expect(Bm25Retriever.fromPath(path.join(tmp, 'nope'))).rejects.toThrow(/nope: does not exist/);
    const emptyDir = path.join(tmp, 'emptydir');
    fs.mkdirSync(emptyDir);
    await expect(Bm25Retriever.fromPath(emptyDir)).rejects.toThrow(/emptydir: is a folder with no files/);
    await expect(Bm25Retriever.fromTexts([])).rejects.toThrow(InvalidArgumentError);
    await expect(Bm25Retriever.fromTexts([42 as unknown as string])).rejects.toThrow(/corpus\[0\] must be a string/);
    await expect(Bm25Retriever.fromTexts(['a'], { b: 2 })).rejects.toThrow(/b must be in \[0, 1\]/);
    // A huge single line is indexed, in bounded passages.
    const huge = path.join(tmp, 'huge.txt');
    fs.writeFileSync(huge, `${words(30_000)} needle`);
    const r = await Bm25Retriever.fromPath(huge);
    expect(r.size).toBe(301);
    expect((await r.retrieve('needle', 1))[0]!.id).toBe(`${huge}#300`);
    await expect(r.retrieve('x', 0)).rejects.toThrow(/k must be a positive integer/);
  });
});
