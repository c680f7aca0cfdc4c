/**
 * The built-in sparse retriever: BM25 over the passages of a corpus, scored as Lucene (and so
 * Pyserini, the paper's retriever) scores it — the English analyzer, k1 = 0.9, b = 0.4, a
 * passage's title in the same field as its text, query terms weighted by their count (see
 * analyzer.ts and bm25-score.ts). Two stores behind one class:
 *
 * - in memory, built from texts, files or folders and saved as one JSON file (the passages and
 *   parameters; the postings are rebuilt when it is loaded);
 * - on disk, a SQLite file written by `Bm25Retriever.buildSqlite` for corpora larger than memory
 *   (sqlite-index.ts).
 *
 * `Bm25Retriever.load(file)` opens either. Indexing yields to the event loop between batches, so
 * progress is reported and an AbortSignal is honoured while a large corpus is indexed.
 */
import fs from 'node:fs';
import { AbortError, CorpusError, InvalidArgumentError } from '../errors';
import { AnalyzerName, termCounts } from './analyzer';
import { topK } from './bm25-score';
import type { ChunkOptions } from './chunk';
import { CorpusPassage, CorpusSource, corpusPassages } from './corpus';
import { Bm25Store, IndexParams, PROGRESS_BATCH, resolveParams } from './index-store';
import { MemoryStore } from './memory-index';
import { SQLITE_BATCH, SqliteStore, buildSqliteIndex, isSqliteFile } from './sqlite-index';
import type { Passage, RetrieveOptions, Retriever } from './types';

export interface Bm25Options {
  /** Term-frequency saturation (default 0.9, Pyserini's). */
  k1?: number;
  /** Length normalization (default 0.4, Pyserini's). */
  b?: number;
  /** 'english' (default: Lucene's EnglishAnalyzer, as Pyserini) or 'standard' (tokens lower-cased, no stop words or stemming). */
  analyzer?: AnalyzerName;
  /** Passage lengths in Lucene's one-byte encoding, as Pyserini's scores have them (default false: exact lengths). */
  luceneNorms?: boolean;
  /** How documents are cut into passages (default: 100 words). */
  chunk?: ChunkOptions;
  /**
   * SQLite indexes: passages whose postings are held in memory before being written (default
   * 50,000; memory while building grows with it, the index's blocks per term shrink with it).
   */
  sqliteBatch?: number;
  /** Called after each batch of passages is indexed, and once at the end with `done` = total. */
  onProgress?: (done: number) => void;
  signal?: AbortSignal;
}

const FORMAT = 'jamba-bm25';

interface IndexFile {
  format: 'jamba-bm25';
  version: 1 | 2;
  params: Record<string, unknown>;
  passages: CorpusPassage[];
}

export class Bm25Retriever implements Retriever {
  private constructor(private readonly store: Bm25Store, readonly params: IndexParams) {}

  /** Indexes a file, a folder or a list of paths (text, .jsonl or DPR .tsv) in memory. */
  static async fromPath(paths: string | string[], options: Bm25Options = {}): Promise<Bm25Retriever> {
    return Bm25Retriever.build(typeof paths === 'string' ? [paths] : paths, true, options);
  }

  /** Indexes texts given in memory (strings, or { text, title? } documents). */
  static async fromTexts(texts: Array<string | { text: string; title?: string; source?: string }>, options: Bm25Options = {}): Promise<Bm25Retriever> {
    return Bm25Retriever.build(texts, false, options);
  }

  /**
   * Indexes a corpus into a SQLite file at `file` (written whole or not at all), streaming it, so
   * memory stays bounded whatever the corpus size; the retriever returned reads from that file.
   */
  static async buildSqlite(paths: string | string[], file: string, options: Bm25Options = {}): Promise<Bm25Retriever> {
    const params = Bm25Retriever.check(options);
    const batch = options.sqliteBatch ?? SQLITE_BATCH;
    if (!Number.isInteger(batch) || batch < 1) throw new InvalidArgumentError(`sqliteBatch must be a positive integer, got ${String(options.sqliteBatch)}`);
    await buildSqliteIndex(corpusPassages(paths, true, options.chunk, options.signal), file, params, options.onProgress, batch);
    return Bm25Retriever.load(file);
  }

  private static check(options: Bm25Options): IndexParams {
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
    return resolveParams(options);
  }

  private static async build(source: CorpusSource, paths: boolean, options: Bm25Options): Promise<Bm25Retriever> {
    const params = Bm25Retriever.check(options);
    const passages: CorpusPassage[] = [];
    for await (const p of corpusPassages(source, paths, options.chunk, options.signal)) {
      passages.push(p);
      if (passages.length % PROGRESS_BATCH === 0) {
        if (options.signal?.aborted) throw new AbortError();
        options.onProgress?.(passages.length);
        await new Promise((r) => setImmediate(r));
      }
    }
    if (options.signal?.aborted) throw new AbortError();
    const r = new Bm25Retriever(new MemoryStore(passages, params.analyzer), params);
    options.onProgress?.(passages.length);
    return r;
  }

  /** Opens an index written by `save` (JSON) or `buildSqlite` (SQLite). */
  static load(file: string): Bm25Retriever {
    if (isSqliteFile(file)) {
      const store = SqliteStore.open(file);
      return new Bm25Retriever(store, store.params);
    }
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
    if (data.version !== 1 && data.version !== 2) throw new CorpusError(`has index version ${String(data.version)}; this jamba-node reads versions 1 and 2`, file);
    const ps = data.passages;
    if (!Array.isArray(ps) || ps.length === 0 || ps.some((p) => !p || typeof p.id !== 'string' || typeof p.text !== 'string' || typeof p.source !== 'string' || (p.title !== undefined && typeof p.title !== 'string')))
      throw new CorpusError('has a malformed passage list', file);
    let params: IndexParams;
    try {
      // Version 1 (MiniSearch) indexes are re-analyzed with the English analyzer; their BM25+ d had to be 0.
      if (data.version === 1 && data.params?.d) throw new InvalidArgumentError(`d is ${String(data.params.d)}: BM25+ is no longer supported`);
      const given = data.params ?? {};
      params = resolveParams({ ...(data.version === 1 ? {} : given), k1: given.k1 ?? NaN, b: given.b ?? NaN }, 'params.');
    } catch (e) {
      throw new CorpusError(`has malformed BM25 parameters: ${(e as Error).message}`, file);
    }
    return new Bm25Retriever(new MemoryStore(ps, params.analyzer), params);
  }

  /** Writes a memory index's passages and parameters as one JSON file (loaded with `Bm25Retriever.load`). */
  save(file: string): void {
    if (!(this.store instanceof MemoryStore)) throw new InvalidArgumentError('a SQLite index is already saved: copy its file');
    const fd = fs.openSync(file, 'w');
    try {
      // Passage by passage: a large corpus is more than one string can hold.
      fs.writeSync(fd, `{"format":"${FORMAT}","version":2,"params":${JSON.stringify(this.params)},"passages":[`);
      this.store.passages.forEach((p, i) => fs.writeSync(fd, (i ? ',' : '') + JSON.stringify(p)));
      fs.writeSync(fd, ']}');
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Passages indexed. */
  get size(): number {
    return this.store.size;
  }

  /** 'memory' or 'sqlite'. */
  get kind(): 'memory' | 'sqlite' {
    return this.store instanceof MemoryStore ? 'memory' : 'sqlite';
  }

  /** The passages whose terms best match `query` (Lucene's BM25), best first; fewer when fewer match. */
  async retrieve(query: string, k: number, options: RetrieveOptions = {}): Promise<Passage[]> {
    if (typeof query !== 'string') throw new InvalidArgumentError('query must be a string');
    if (!Number.isInteger(k) || k < 1) throw new InvalidArgumentError(`k must be a positive integer, got ${String(k)}`);
    if (options.signal?.aborted) throw new AbortError();
    const hits = topK(termCounts(query, this.params.analyzer), (t) => this.store.postings(t), this.store.stats, this.params, k);
    return hits.map((h) => {
      const s = this.store.passage(h.doc);
      const p: Passage = { id: s.id, text: s.text, score: h.score, metadata: { source: s.source } };
      if (s.title !== undefined) p.title = s.title;
      return p;
    });
  }

  /** Closes a SQLite index's file (a memory index has nothing to close). */
  close(): void {
    this.store.close();
  }
}
