/**
 * The built-in sparse retriever: BM25 over passages of a corpus, on MiniSearch. MiniSearch has
 * no dependencies and no native code, ships its own types, scores with BM25 (k1, b and BM25+'s d
 * are parameters), indexes incrementally and serializes to JSON, which is everything this needs;
 * the paper's retriever was BM25 too (Pyserini), and its defaults k1 = 0.9, b = 0.4, d = 0 (plain
 * BM25) are ours. One difference from Lucene remains: MiniSearch measures a passage's length in
 * distinct terms rather than in terms, which for passages of about 100 words changes little. Indexing yields to the event loop between batches, so progress is reported and
 * an AbortSignal is honoured while a large corpus is indexed.
 */
import fs from 'node:fs';
import MiniSearch from 'minisearch';
import { AbortError, CorpusError, InvalidArgumentError } from '../errors';
import { ChunkOptions, chunkText, resolveChunkOptions } from './chunk';
import { CorpusSource, readCorpus } from './corpus';
import type { Passage, RetrieveOptions, Retriever } from './types';

export interface Bm25Options {
  /** Term-frequency saturation (default 0.9). */
  k1?: number;
  /** Length normalization (default 0.4). */
  b?: number;
  /** BM25+ lower bound per matching term (default 0: plain BM25). */
  d?: number;
  /** How documents are cut into passages (default: 100 words). */
  chunk?: ChunkOptions;
  /** Called after each batch of passages is indexed: passages done and in all. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

interface StoredPassage {
  id: string;
  text: string;
  title?: string;
  source: string;
}

interface IndexFile {
  format: 'jamba-bm25';
  version: 1;
  params: { k1: number; b: number; d: number };
  passages: StoredPassage[];
  index: unknown;
}

const FORMAT = 'jamba-bm25';
/** MiniSearch's default word separator: what it splits documents and queries on. */
const SPACE_OR_PUNCTUATION = /[\n\r\p{Z}\p{P}]+/u;
const BATCH = 2000;

function miniSearchOptions() {
  // Passages are stored here, not in MiniSearch; its ids are passage indices.
  return { fields: ['text', 'title'], idField: 'n', storeFields: [] as string[] };
}

function param(v: number | undefined, name: string, dflt: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw new InvalidArgumentError(`${name} must be a non-negative number, got ${String(v)}`);
  return x;
}

export class Bm25Retriever implements Retriever {
  private constructor(
    private readonly search: MiniSearch,
    private readonly passages: StoredPassage[],
    readonly params: { k1: number; b: number; d: number },
  ) {}

  /** Indexes a file, a folder or a list of paths. */
  static async fromPath(paths: string | string[], options: Bm25Options = {}): Promise<Bm25Retriever> {
    return Bm25Retriever.build(readCorpus(typeof paths === 'string' ? [paths] : paths, true), options);
  }

  /** Indexes texts given in memory (strings, or { text, title? } documents). */
  static async fromTexts(texts: Array<string | { text: string; title?: string; source?: string }>, options: Bm25Options = {}): Promise<Bm25Retriever> {
    return Bm25Retriever.build(readCorpus(texts, false), options);
  }

  private static async build(docs: ReturnType<typeof readCorpus>, options: Bm25Options): Promise<Bm25Retriever> {
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
    const params = { k1: param(options.k1, 'k1', 0.9), b: param(options.b, 'b', 0.4), d: param(options.d, 'd', 0) };
    if (params.b > 1) throw new InvalidArgumentError(`b must be in [0, 1], got ${params.b}`);
    resolveChunkOptions(options.chunk);
    const passages: StoredPassage[] = [];
    for (const doc of docs) {
      const pieces = await chunkText(doc.text, options.chunk);
      pieces.forEach((text, i) => {
        const p: StoredPassage = { id: `${doc.source}#${i}`, text, source: doc.source };
        if (doc.title !== undefined) p.title = doc.title;
        passages.push(p);
      });
    }
    if (passages.length === 0)
      throw new CorpusError('has no text to index (every document is empty or whitespace)', docs.length === 1 ? docs[0]!.source : `the corpus of ${docs.length} documents`);
    const search = new MiniSearch(miniSearchOptions());
    for (let i = 0; i < passages.length; i += BATCH) {
      if (options.signal?.aborted) throw new AbortError();
      const batch = passages.slice(i, i + BATCH).map((p, j) => ({ n: i + j, text: p.text, title: p.title ?? '' }));
      search.addAll(batch);
      options.onProgress?.(Math.min(passages.length, i + BATCH), passages.length);
      if (i + BATCH < passages.length) await new Promise((r) => setImmediate(r));
    }
    return new Bm25Retriever(search, passages, params);
  }

  /** Loads an index written by `save`. */
  static load(file: string): Bm25Retriever {
    let raw: string;
    try {
      raw = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new CorpusError(`cannot read the index: ${(e as Error).message}`, file);
    }
    let data: IndexFile;
    try {
      data = JSON.parse(raw) as IndexFile;
    } catch (e) {
      throw new CorpusError(`is not a saved index (not JSON: ${(e as Error).message})`, file);
    }
    if (data === null || typeof data !== 'object' || data.format !== FORMAT) throw new CorpusError(`is not a saved ${FORMAT} index`, file);
    if (data.version !== 1) throw new CorpusError(`has index version ${String(data.version)}; this jamba-node reads version 1`, file);
    const ps = data.passages;
    if (!Array.isArray(ps) || ps.length === 0 || ps.some((p) => !p || typeof p.id !== 'string' || typeof p.text !== 'string' || typeof p.source !== 'string' || (p.title !== undefined && typeof p.title !== 'string')))
      throw new CorpusError('has a malformed passage list', file);
    let params: Bm25Retriever['params'];
    try {
      params = { k1: param(data.params?.k1, 'params.k1', NaN), b: param(data.params?.b, 'params.b', NaN), d: param(data.params?.d, 'params.d', NaN) };
    } catch (e) {
      throw new CorpusError(`has malformed BM25 parameters: ${(e as Error).message}`, file);
    }
    let search: MiniSearch;
    try {
      search = MiniSearch.loadJS(data.index as Parameters<typeof MiniSearch.loadJS>[0], miniSearchOptions());
    } catch (e) {
      throw new CorpusError(`has a malformed index: ${(e as Error).message}`, file);
    }
    if (search.documentCount !== ps.length) throw new CorpusError(`indexes ${search.documentCount} passages but lists ${ps.length}`, file);
    return new Bm25Retriever(search, ps, params);
  }

  /** Writes the passages and the index as one JSON file (loaded with `Bm25Retriever.load`). */
  save(file: string): void {
    const data: IndexFile = { format: FORMAT, version: 1, params: this.params, passages: this.passages, index: this.search.toJSON() };
    fs.writeFileSync(file, JSON.stringify(data));
  }

  /** Passages indexed. */
  get size(): number {
    return this.passages.length;
  }

  /** The passages whose words best match `query`, best first (fewer when fewer match). */
  async retrieve(query: string, k: number, options: RetrieveOptions = {}): Promise<Passage[]> {
    if (typeof query !== 'string') throw new InvalidArgumentError('query must be a string');
    if (!Number.isInteger(k) || k < 1) throw new InvalidArgumentError(`k must be a positive integer, got ${String(k)}`);
    if (options.signal?.aborted) throw new AbortError();
    const { k1, b, d } = this.params;
    // MiniSearch multiplies each score by the number of query terms matched (a coordination
    // factor); dividing it back out leaves plain BM25, the sum over query terms.
    // A term repeated in the query counts once per occurrence (as BM25 sums over query terms);
    // searching each distinct term once, weighted by its count, gives that sum at less cost.
    const counts = new Map<string, number>();
    for (const t of query.split(SPACE_OR_PUNCTUATION)) if (t) counts.set(t.toLowerCase(), (counts.get(t.toLowerCase()) ?? 0) + 1);
    const hits = this.search.search([...counts.keys()].join(' '), { combineWith: 'OR', bm25: { k: k1, b, d }, boostTerm: (t) => counts.get(t) ?? 1 })
      .map((h) => ({ n: h.id as number, score: h.score / Math.max(1, h.queryTerms.length) }));
    // Ties in score keep corpus order, so results never depend on the index's internal order.
    hits.sort((x, y) => y.score - x.score || x.n - y.n);
    return hits.slice(0, k).map((h) => {
      const s = this.passages[h.n]!;
      const p: Passage = { id: s.id, text: s.text, score: h.score, metadata: { source: s.source } };
      if (s.title !== undefined) p.title = s.title;
      return p;
    });
  }
}
