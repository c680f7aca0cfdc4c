/**
 * The built-in retriever: the Lucene English analyzer, BM25 scores against a hand computation
 * of Lucene's formula, streamed corpora (text, JSONL, DPR TSV), indexes in memory and on disk
 * (which must rank alike), saved and loaded (and the JSON and SQLite indexes of earlier
 * versions), progress and abort, contamination filtering, and bad corpora and damaged indexes
 * refused with errors that name the file.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  AbortError, Bm25Retriever, CorpusError, Exclusion, InvalidArgumentError, LUCENE_ENGLISH_STOP_WORDS, Passage, analyze, chunkText,
  retrieveAllowed, standardTokens,
} from '../lib';
import { packageVersion } from '../lib/paths';
import { retrievalNative } from '../lib/retrieval/native-index';
import { luceneLength } from './helpers/reference-bm25';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-retrieval-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const words = (n: number, w = (i: number) => `w${i}`) => Array.from({ length: n }, (_, i) => w(i)).join(' ');

describe('the English analyzer (Lucene\'s, as Pyserini)', () => {
  test('the standard tokenizer follows Unicode word boundaries', () => {
    expect(standardTokens("The U.S.A. isn't 3,141.59 e-mail wi_fi café's O'Neil's x:y 1.5 a.b. --- _ 東京タワー"))
      .toEqual(['The', 'U.S.A', "isn't", '3,141.59', 'e', 'mail', 'wi_fi', "café's", "O'Neil's", 'x:y', '1.5', 'a.b', '東', '京', 'タワー']);
    expect(standardTokens('x'.repeat(600))).toEqual(['x'.repeat(255), 'x'.repeat(255), 'x'.repeat(90)]);
  });

  test('possessives, lower case, the 33 stop words, Porter stems', () => {
    expect(LUCENE_ENGLISH_STOP_WORDS.size).toBe(33);
    expect(analyze("The dog's toys AND the Cats’s running were relational; it is THERE")).toEqual(['dog', 'toi', 'cat', 'run', 'were', 'relat']);
    // Porter's own examples (Porter 1980), as Lucene's PorterStemmer gives them.
    const porter: Array<[string, string]> = [['caresses', 'caress'], ['ponies', 'poni'], ['ties', 'ti'], ['motoring', 'motor'], ['conflated', 'conflat'],
      ['hopping', 'hop'], ['happy', 'happi'], ['relational', 'relat'], ['generalization', 'gener'], ['oscillators', 'oscil'], ['is', 'is']];
    for (const [w, st] of porter) expect(analyze(w === 'is' ? 'isx' : w)).toEqual([w === 'is' ? 'isx' : st]);
    expect(analyze('Dogs DOGS dogs', 'standard')).toEqual(['dogs', 'dogs', 'dogs']);
  });

  test("Lucene's one-byte length encoding (the reference's)", () => {
    for (let i = 0; i < 24; i++) expect(luceneLength(i)).toBe(i);
    expect([24, 25, 40, 54, 55, 100, 1000].map(luceneLength)).toEqual([24, 25, 40, 54, 54, 96, 984]);
  });
});

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
    { title: 'Cats', text: "the cat sat on the cat's mat" },
    { title: 'Dogs', text: 'the dog chased the cat around the garden, running and running' },
    { title: 'Birds', text: 'a bird sang in the garden at dawn' },
    { title: 'Animals', text: 'dogs and cats and birds' },
    { title: 'Mats', text: `the mat was red ${words(60)}` },
  ];

  /**
   * Lucene's BM25 written out by hand in float64: terms from the analyzer (title and text in one
   * field), dl = terms kept, idf = ln(1 + (N − df + 0.5) / (df + 0.5)), query terms weighted by
   * count. The engine takes Lucene's float32 steps (bit-exact against real Lucene in
   * retrieval-lucene.test.ts), so the two agree to float precision.
   */
  function lucene(query: string, k1: number, b: number, norms: boolean): number[] {
    const docs = corpus.map((d) => analyze(`${d.title}\n${d.text}`));
    const avg = docs.reduce((a, t) => a + t.length, 0) / docs.length;
    return docs.map((t) => {
      let score = 0;
      for (const term of new Set(analyze(query))) {
        const qc = analyze(query).filter((x) => x === term).length;
        const tf = t.filter((x) => x === term).length;
        if (tf === 0) continue;
        const df = docs.filter((d) => d.includes(term)).length;
        const idf = Math.log(1 + (docs.length - df + 0.5) / (df + 0.5));
        const dl = norms ? luceneLength(t.length) : t.length;
        score += (qc * idf * tf) / (tf + k1 * (1 - b + (b * dl) / avg));
      }
      return score;
    });
  }

  test.each([[0.9, 0.4, false], [1.2, 0.75, false], [0.9, 0.4, true]])('scores and ranks as Lucene (k1 %p, b %p, Lucene norms %p)', async (k1, b, luceneNorms) => {
    const r = await Bm25Retriever.fromTexts(corpus, { k1, b, luceneNorms });
    expect(r.params).toEqual({ k1, b, luceneNorms, analyzer: 'english' });
    for (const query of ['cat mat', 'garden dog running', 'the red mat mat', 'birds', "Cats' DOGS", 'w7 w8 mat']) {
      const want = lucene(query, k1, b, luceneNorms).map((score, i) => ({ i, score })).filter((x) => x.score > 0)
        .sort((x, y) => y.score - x.score || x.i - y.i);
      const got = await r.retrieve(query, 10);
      expect(got.map((p) => p.id)).toEqual(want.map((w) => `text[${w.i}]#0`));
      got.forEach((p, j) => expect(Math.abs(p.score! - want[j]!.score) / want[j]!.score).toBeLessThan(1e-6));
    }
    expect((await r.retrieve('cat', 1)).map((p) => p.title)).toEqual(['Cats']);
    expect(await r.retrieve('zebra the', 3)).toEqual([]);
    // The encoding changes the long passage's length (62 terms read back as 60), so its score.
    if (!luceneNorms) expect(Math.abs((await r.retrieve('red', 1))[0]!.score! - lucene('red', k1, b, true)[4]!)).toBeGreaterThan(1e-3);
  });

  test('files and folders are streamed, chunked and indexed; passages name their file relative to the path given', async () => {
    const dir = path.join(tmp, 'docs');
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'a.txt'), `${words(150)} unicorn`);
    fs.writeFileSync(path.join(dir, 'sub', 'b.md'), 'A passage about dragons.');
    fs.writeFileSync(path.join(dir, '.hidden'), 'dragons dragons dragons');
    const r = await Bm25Retriever.fromPath(dir);
    expect(r.size).toBe(3);
    const [hit] = await r.retrieve('unicorn', 1);
    expect(hit!.id).toBe('docs/a.txt#1');
    expect(hit!.metadata).toEqual({ source: 'docs/a.txt' });
    expect((await r.retrieve('dragons', 5)).map((p) => p.id)).toEqual(['docs/sub/b.md#0']);
    expect((await (await Bm25Retriever.fromPath(path.join(dir, 'a.txt'))).retrieve('unicorn', 1))[0]!.id).toBe('a.txt#1');
  });

  test('a file read in 1 MiB pieces gives the passages of the whole text, multi-byte characters and long words across pieces included', async () => {
    const text = Array.from({ length: 150_000 }, (_, i) => (i % 997 === 0 ? 'é'.repeat(250) : i % 13 === 0 ? `ünïcödé${i}\n` : `w${i}`)).join(' ');
    expect(Buffer.byteLength(text)).toBeGreaterThan(2 ** 20 + 10_000);
    const file = path.join(tmp, 'big.txt');
    fs.writeFileSync(file, text);
    const r = await Bm25Retriever.fromPath(file);
    const want = await chunkText(text);
    expect(r.size).toBe(want.length);
    expect([...r.passages()].map((p) => p.text)).toEqual(want);
  });

  test('JSONL records and DPR TSV passages keep their ids and titles; bad lines are named', async () => {
    const jsonl = path.join(tmp, 'psgs.jsonl');
    fs.writeFileSync(jsonl, [
      { id: 'doc1', title: '"Anarchism"', text: 'Anarchism is a political philosophy' },
      { id: 7, contents: 'Autism\nAutism is a developmental disorder' },
      { id: 'long', title: 'Long', text: words(150) },
    ].map((x) => JSON.stringify(x)).join('\n') + '\n\n');
    const r = await Bm25Retriever.fromPath(jsonl);
    expect(r.size).toBe(4);
    const [a] = await r.retrieve('political anarchism', 1);
    expect([a!.id, a!.title, a!.text]).toEqual(['doc1', '"Anarchism"', 'Anarchism is a political philosophy']);
    expect((await r.retrieve('developmental', 1))[0]!.id).toBe('7');
    expect((await r.retrieve('w120', 1))[0]!.id).toBe('long#1');
    const tsv = path.join(tmp, 'psgs_w100.tsv');
    fs.writeFileSync(tsv, 'id\ttext\ttitle\n1\t"Aaron is a ""prophet"" in the Bible"\tAaron\n2\tAbba were a Swedish pop group\tABBA\n');
    const t = await Bm25Retriever.fromPath(tsv);
    expect((await t.retrieve('prophet', 1)).map((p) => [p.id, p.title, p.text])).toEqual([['1', 'Aaron', 'Aaron is a "prophet" in the Bible']]);
    const bad = path.join(tmp, 'bad.jsonl');
    fs.writeFileSync(bad, '{"id": "a", "text": "fine"}\n{"id": "b"}\n');
    await expect(Bm25Retriever.fromPath(bad)).rejects.toThrow(`${bad}: line 2 is not a record`);
    fs.writeFileSync(bad, '{"id": "a", "text": "fine"}\nnot json\n');
    await expect(Bm25Retriever.fromPath(bad)).rejects.toThrow(`${bad}: line 2 is not JSON: `);
    // Found while an earlier batch is still being indexed: the same error, and nothing left behind.
    fs.writeFileSync(bad, `${Array.from({ length: 4100 }, (_, i) => JSON.stringify({ id: `r${i}`, text: `record ${i}` })).join('\n')}\nnot json\n`);
    await expect(Bm25Retriever.fromPath(bad)).rejects.toThrow(`${bad}: line 4101 is not JSON: `);
    const onDisk = path.join(tmp, 'partial.bm25');
    await expect(Bm25Retriever.buildIndex(bad, onDisk)).rejects.toThrow(`${bad}: line 4101 is not JSON: `);
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('partial.bm25'))).toEqual([]);
    const badTsv = path.join(tmp, 'bad.tsv');
    fs.writeFileSync(badTsv, 'a\tb\n1\t2\n');
    await expect(Bm25Retriever.fromPath(badTsv)).rejects.toThrow(/bad.tsv: has no header line/);
  });

  test('an index saved and loaded gives the same results; damaged files are refused by name', async () => {
    const docs = corpus.map((d, i) => ({ ...d, title: `Doc ${i}` }));
    const r = await Bm25Retriever.fromTexts(docs);
    const file = path.join(tmp, 'index.bm25');
    r.save(file);
    const back = await Bm25Retriever.load(file);
    expect(back.kind).toBe('disk');
    expect(back.params).toEqual(r.params);
    expect(back.bytes).toBe(fs.statSync(file).size);
    for (const q of ['cat', 'garden dawn', 'Doc 3']) expect(await back.retrieve(q, 5)).toEqual(await r.retrieve(q, 5));
    expect((await back.retrieve('dawn', 1))[0]!.title).toBe('Doc 2');
    expect([...back.passages()].map((p) => p.title)).toEqual(docs.map((d) => d.title));
    back.close();
    await expect(back.retrieve('cat', 1)).rejects.toThrow(/has been closed/);
    // Damage anywhere is reported by name, never read out of bounds: every truncation, and flipped
    // bytes; verify() finds every flip but those in the zero padding between sections.
    const bytes = fs.readFileSync(file);
    const bad = path.join(tmp, 'bad.bm25');
    const outcomes = new Set<string>();
    const tryLoad = async (b: Buffer): Promise<boolean> => {
      fs.writeFileSync(bad, b);
      try {
        const x = await Bm25Retriever.load(bad);
        for (const q of ['cat mat', 'garden dog running', 'Doc']) await x.retrieve(q, 5);
        [...x.passages()];
        await x.verify();
        x.close();
        return true;
      } catch (e) {
        expect(e).toBeInstanceOf(CorpusError);
        expect((e as Error).message.startsWith(`${bad}: `)).toBe(true);
        outcomes.add((e as Error).message.replace(/\(.*\)/, '').slice(bad.length + 2));
        return false;
      }
    };
    for (let n = 0; n < bytes.length; n += Math.max(1, Math.floor(n / 8))) expect(await tryLoad(bytes.subarray(0, n))).toBe(false);
    for (let i = 0; i < bytes.length; i += 3) {
      const b = Buffer.from(bytes);
      b[i] = b[i]! ^ 0x5a;
      if (await tryLoad(b)) expect([i, bytes[i]]).toEqual([i, 0]);
    }
    expect([...outcomes]).toEqual(expect.arrayContaining(['is not a jamba-node BM25 index', 'the index is damaged ']));
    await expect(Bm25Retriever.load(path.join(tmp, 'missing.bm25'))).rejects.toThrow(CorpusError);
  });

  test('JSON indexes of earlier versions load with the scoring they recorded, and say when it is not Pyserini\'s; SQLite ones are refused with what to do', async () => {
    const docs = corpus.map((d, i) => ({ id: `text[${i}]#0`, title: `Doc ${i}`, text: d.text, source: `text[${i}]` }));
    const v2 = path.join(tmp, 'v2.json');
    const write = (file: string, o: object) => fs.writeFileSync(file, JSON.stringify({ format: 'jamba-bm25', version: 2, params: { k1: 0.9, b: 0.4, analyzer: 'english', luceneNorms: false }, passages: docs, ...o }));
    write(v2, {});
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      const exact = await Bm25Retriever.load(v2);
      expect(exact.params.luceneNorms).toBe(false);
      const same = await Bm25Retriever.fromTexts(docs, { luceneNorms: false });
      for (const q of ['cat', 'garden dawn', 'red mat']) expect((await exact.retrieve(q, 5)).map((p) => p.score)).toEqual((await same.retrieve(q, 5)).map((p) => p.score));
      const rescored = await Bm25Retriever.load(v2, { luceneNorms: true });
      expect(rescored.params.luceneNorms).toBe(true);
      const lucene = await Bm25Retriever.fromTexts(docs);
      expect((await rescored.retrieve('red mat', 5)).map((p) => p.score)).toEqual((await lucene.retrieve('red mat', 5)).map((p) => p.score));
      expect(warn.mock.calls).toEqual([[expect.stringMatching(/v2.json was saved by an earlier jamba-node with exact passage lengths.*luceneNorms: true/), { code: 'JAMBA_BM25_EXACT_LENGTHS' }]]);
    } finally {
      warn.mockRestore();
    }
    const v1 = path.join(tmp, 'v1.json');
    write(v1, { version: 1, params: { k1: 0.9, b: 0.4, d: 0 }, index: {} });
    expect((await (await Bm25Retriever.load(v1)).retrieve('garden', 3)).map((p) => p.id)).toEqual((await (await Bm25Retriever.fromTexts(docs, { luceneNorms: false })).retrieve('garden', 3)).map((p) => p.id));
    const bad = path.join(tmp, 'bad.json');
    for (const [content, msg] of [
      ['{"format":"jamba-bm25"', /bad.json: is not a saved index \(not JSON/],
      [JSON.stringify({ format: 'jamba-bm25', version: 9, passages: docs }), /bad.json: has index version 9/],
      [JSON.stringify({ format: 'jamba-bm25', version: 2, passages: [{ id: 1 }] }), /bad.json: has a malformed passage list/],
      [JSON.stringify({ format: 'jamba-bm25', version: 2, params: { k1: -1, b: 0.4 }, passages: docs }), /bad.json: has malformed BM25 parameters: params.k1 must be a non-negative number/],
      [JSON.stringify({ format: 'jamba-bm25', version: 2, params: { k1: 1, b: 0.4, analyzer: 'klingon' }, passages: docs }), /bad.json: has malformed BM25 parameters: params.analyzer must be/],
      [JSON.stringify({ format: 'jamba-bm25', version: 1, params: { k1: 0.9, b: 0.4, d: 0.5 }, passages: docs }), /bad.json: has malformed BM25 parameters: d is 0.5/],
      ['{"format":"other"}', /bad.json: is not a jamba-node BM25 index/],
    ] as Array<[string, RegExp]>) {
      fs.writeFileSync(bad, content);
      await expect(Bm25Retriever.load(bad)).rejects.toThrow(msg);
    }
    const sqlite = path.join(tmp, 'old.sqlite');
    fs.writeFileSync(sqlite, Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(100)]));
    await expect(Bm25Retriever.load(sqlite)).rejects.toThrow(/old.sqlite: is a SQLite index from an earlier jamba-node.*jamba index --corpus PATH --out FILE/);
  });

  test('an index built on disk in many runs ranks and scores exactly as the memory index, from a file that is complete or absent', async () => {
    const dir = path.join(tmp, 'disk');
    fs.mkdirSync(dir);
    const vocab = Array.from({ length: 300 }, (_, i) => `t${i}`);
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    // Enough passages for several build batches and blocks of 128, with repeated terms and titles.
    const lines = Array.from({ length: 12_500 }, (_, i) => JSON.stringify({ id: `p${i}`, title: i % 3 ? `T${i % 50}` : undefined,
      text: Array.from({ length: 8 + (i % 13) }, () => vocab[Math.floor(rnd() ** 2 * vocab.length)]).join(' ') }));
    const src = path.join(dir, 'corpus.jsonl');
    fs.writeFileSync(src, lines.join('\n'));
    const mem = await Bm25Retriever.fromPath(src);
    const file = path.join(dir, 'index.bm25');
    const progress: number[] = [];
    const disk = await Bm25Retriever.buildIndex(src, file, { memoryMB: 0.1, onProgress: (d) => progress.push(d) });
    try {
      expect(disk.kind).toBe('disk');
      expect(disk.size).toBe(mem.size);
      expect(progress.at(-1)).toBe(12_500);
      // The file records what wrote it: this package and its version.
      const reader = retrievalNative().openIndex(file);
      expect(JSON.parse(reader.info().meta)).toMatchObject({ format: 'jamba-bm25', writer: `jamba-node ${packageVersion()}` });
      reader.close();
      for (const q of ['t0 t1 t299', 't5 t5 t17 T3', 't250', 'T49 t100 t101 t102 t103', 'absent t2']) {
        const [a, b] = [await mem.retrieve(q, 20), await disk.retrieve(q, 20)];
        expect(b).toEqual(a);
        expect(a.length).toBe(20);
      }
      // Pruning (MaxScore, skipped blocks) never changes the k best: they equal the head of the full ranking.
      for (const q of ['t0 t1 t2 t3', 't0 t0 t299 t150', 't1 t7 T12 t40 t41 t42 t43']) {
        const all = await disk.retrieve(q, 20_000);
        for (const k of [1, 5, 50]) expect(await disk.retrieve(q, k)).toEqual(all.slice(0, k));
      }
      const reopened = await Bm25Retriever.load(file);
      expect(await reopened.retrieve('t3 t4', 5)).toEqual(await mem.retrieve('t3 t4', 5));
      reopened.close();
      expect(fs.readdirSync(dir).sort()).toEqual(['corpus.jsonl', 'index.bm25']);
    } finally {
      disk.close();
    }
    // Aborted: no index file, no temporary file.
    const ac = new AbortController();
    const aborted = path.join(dir, 'aborted.bm25');
    await expect(Bm25Retriever.buildIndex(src, aborted, { memoryMB: 0.1, signal: ac.signal, onProgress: () => ac.abort() })).rejects.toThrow(AbortError);
    expect(fs.readdirSync(dir).sort()).toEqual(['corpus.jsonl', 'index.bm25']);
    await expect(Bm25Retriever.buildIndex(src, path.join(dir, 'no-such-dir', 'x.bm25'))).rejects.toThrow(CorpusError);
    await expect(Bm25Retriever.buildIndex(src, path.join(dir, 'no-such-dir', 'x.bm25'))).rejects.toThrow(/no-such-dir\/x.bm25: cannot create the index/);
  });

  test('indexing reports progress and stops on abort', async () => {
    const texts = Array.from({ length: 4500 }, (_, i) => `document ${i} about topic${i % 7}`);
    const seen: number[] = [];
    const r = await Bm25Retriever.fromTexts(texts, { onProgress: (d) => seen.push(d) });
    expect(r.size).toBe(4500);
    expect(seen).toEqual([2000, 4000, 4500]);
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
    await expect(Bm25Retriever.fromTexts(['a'], { analyzer: 'x' as 'english' })).rejects.toThrow(/analyzer must be 'english' or 'standard'/);
    // A huge single line is indexed, in bounded passages.
    const huge = path.join(tmp, 'huge.txt');
    fs.writeFileSync(huge, `${words(30_000)} needle`);
    const r = await Bm25Retriever.fromPath(huge);
    expect(r.size).toBe(301);
    expect((await r.retrieve('needle', 1))[0]!.id).toBe('huge.txt#300');
    await expect(r.retrieve('x', 0)).rejects.toThrow(/k must be a positive integer/);
  });
});

describe('contamination filtering', () => {
  const P = (id: string, text: string, title?: string): Passage => (title === undefined ? { id, text } : { id, text, title });
  const eval_ = words(80, (i) => `e${i}`);

  test('by title (quotes ignored), by id, and by a shared run of words', () => {
    const x = new Exclusion({ titles: ['Anarchism', '"Autism"'], ids: ['p9'], overlapText: eval_, overlapWords: 32 });
    expect(x.excludes(P('a', 'x', '"Anarchism"'))).toBe(true);
    expect(x.excludes(P('a', 'x', 'Autism'))).toBe(true);
    expect(x.excludes(P('a', 'x', 'Anarchy'))).toBe(false);
    expect(x.excludes(P('p9', 'x'))).toBe(true);
    const run = (from: number, n: number) => words(n, (i) => `e${from + i}`);
    expect(x.excludes(P('b', `before ${run(10, 32)} after`))).toBe(true);
    expect(x.excludes(P('b', `before ${run(10, 31)} after ${run(50, 31)}`))).toBe(false);
    expect(x.excludes(P('b', `${run(48, 32)}`))).toBe(true);
    expect(x.excludes(P('b', `${run(49, 32)}`))).toBe(false);  // e49..e80: e80 is past the text
    expect(new Exclusion({ overlapText: eval_, overlapWords: 3 }).excludes(P('c', 'e7\ne8   e9'))).toBe(true);
    expect(() => new Exclusion({ titles: 'x' as unknown as string[] })).toThrow(/exclude.titles must be an array of strings/);
    expect(() => new Exclusion({ overlapWords: 0 })).toThrow(/exclude.overlapWords must be a positive integer/);
  });

  test('the retriever is asked for more until k allowed passages are found, and the passed-over ones are counted', async () => {
    const ranked = Array.from({ length: 40 }, (_, i) => P(`p${i}`, `text ${i}`, i < 20 ? 'Forbidden' : `T${i}`));
    const asked: number[] = [];
    const retriever = { retrieve: async (_q: string, k: number) => (asked.push(k), ranked.slice(0, k)) };
    const got = await retrieveAllowed(retriever, 'q', 2, new Exclusion({ titles: ['Forbidden'] }));
    expect(got.passages.map((p) => p.id)).toEqual(['p20', 'p21']);
    expect(got.excluded).toBe(20);
    expect(asked).toEqual([16, 32]);
    const none = await retrieveAllowed(retriever, 'q', 1, new Exclusion({ titles: ['Forbidden', ...ranked.slice(20).map((p) => p.title!)] }));
    expect(none).toEqual({ passages: [], excluded: 40 });
    expect((await retrieveAllowed(retriever, 'q', 3, null)).passages.map((p) => p.id)).toEqual(['p0', 'p1', 'p2']);
  });
});
