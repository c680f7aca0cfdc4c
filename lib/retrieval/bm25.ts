/**
 * The built-in sparse retriever: BM25 over the passages of a corpus, scored exactly as Lucene (and
 * so Pyserini, the paper's retriever) scores it — the English analyzer, k1 = 0.9, b = 0.4,
 * Lucene's one-byte length norms, a passage's title in the same field as its text, query terms
 * weighted by their count, Lucene's float steps and tie order (csrc/retrieval/bm25_math.h).
 *
 * One index format (csrc/retrieval/index_format.h), built and searched by the native module:
 * block-max MaxScore over compressed postings, passages stored LZ4-compressed. Two ways to hold it:
 *
 * - in memory, built from texts, files or folders (`fromTexts`, `fromPath`), written to a file by
 *   `save`;
 * - on disk, built straight into a file (`buildIndex`) in bounded memory, whatever the corpus
 *   size, and searched in place through mmap.
 *
 * `Bm25Retriever.load(file)` opens either file (and the JSON indexes of earlier versions).
 * Building and searching run off the JS thread; progress is reported and an AbortSignal honoured.
 */
import fs from 'node:fs';
import { AbortError, CorpusError, InvalidArgumentError, JambaError, fromNative } from '../errors';
import { packageVersion } from '../paths';
import type { AnalyzerName } from './analyzer';
import { IndexParams, resolveParams } from './bm25-params';
import type { ChunkOptions } from './chunk';
import { CorpusPassage, CorpusSource, corpusPassages } from './corpus';
import { isJsonIndex, readJsonIndex, refuseSqlite } from './legacy-index';
import { NativeIndexReader, NativeIndexWriter, StoredPassage, abortFlag, retrievalNative } from './native-index';
import type { Passage, RetrieveOptions, Retriever } from './types';

export type { IndexParams };

export interface Bm25Options {
  /** Term-frequency saturation (default 0.9, Pyserini's). */
  k1?: number;
  /** Length normalization (default 0.4, Pyserini's). */
  b?: number;
  /** 'english' (default: Lucene's EnglishAnalyzer, as Pyserini) or 'standard' (tokens lower-cased, no stop words or stemming). */
  analyzer?: AnalyzerName;
  /**
   * Passage lengths in Lucene's one-byte norm, as Pyserini's scores have them (default true).
   * false keeps exact lengths: slightly different scores, not Pyserini's.
   */
  luceneNorms?: boolean;
  /** How documents are cut into passages (default: 100 words). */
  chunk?: ChunkOptions;
  /**
   * `buildIndex`: MiB of postings held in memory before they are written out as a sorted run
   * (default 256); building's memory grows with it, its merge work shrinks.
   */
  memoryMB?: number;
  /** Called after each batch of passages is indexed, and once at the end with `done` = total. */
  onProgress?: (done: number) => void;
  signal?: AbortSignal;
}

export interface Bm25LoadOptions {
  /**
   * For a JSON index saved by an earlier version with exact lengths: index it again with Lucene's
   * norms, so that it scores as Pyserini does (its recorded scoring is kept by default).
   */
  luceneNorms?: boolean;
}

/** Passages handed to the native writer at a time (and between progress reports). */
const BATCH = 2000;
const FORMAT = 'jamba-bm25';

/** A native error as the typed error the package throws, naming the index. */
function indexError(e: unknown, name: string): Error {
  if (e instanceof JambaError) return e;  // already typed (a corpus file's error names that file)
  const err = fromNative(e);
  if (err instanceof JambaError && (err.code === 'corpus' || err.code === 'io')) {
    const prefix = `${name}: `;
    return new CorpusError(err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message, name);
  }
  return err;
}

export class Bm25Retriever implements Retriever {
  private reader: NativeIndexReader | null;

  private constructor(reader: NativeIndexReader, readonly params: IndexParams, readonly kind: 'memory' | 'disk', private readonly name: string) {
    this.reader = reader;
  }

  /** Indexes a file, a folder or a list of paths (text, .jsonl or DPR .tsv) in memory. */
  static async fromPath(paths: string | string[], options: Bm25Options = {}): Promise<Bm25Retriever> {
    return Bm25Retriever.build(typeof paths === 'string' ? [paths] : paths, true, options, undefined);
  }

  /** Indexes texts given in memory (strings, or { text, title?, source? } documents). */
  static async fromTexts(texts: Array<string | { text: string; title?: string; source?: string }>, options: Bm25Options = {}): Promise<Bm25Retriever> {
    return Bm25Retriever.build(texts, false, options, undefined);
  }

  /**
   * Indexes a corpus into the file `file` (written whole or not at all), streaming it, so that
   * memory stays bounded whatever the corpus size; the retriever returned searches that file.
   */
  static async buildIndex(paths: string | string[], file: string, options: Bm25Options = {}): Promise<Bm25Retriever> {
    if (typeof file !== 'string' || file === '') throw new InvalidArgumentError('file must be a path');
    return Bm25Retriever.build(typeof paths === 'string' ? [paths] : paths, true, options, file);
  }

  private static async build(source: CorpusSource, paths: boolean, options: Bm25Options, file: string | undefined,
                             given?: CorpusPassage[]): Promise<Bm25Retriever> {
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
    const params = resolveParams(options);
    const memoryMB = options.memoryMB ?? 256;
    if (typeof memoryMB !== 'number' || !(memoryMB > 0)) throw new InvalidArgumentError(`memoryMB must be a positive number, got ${String(options.memoryMB)}`);
    const name = file ?? 'the memory index';
    const native = retrievalNative();
    let writer: NativeIndexWriter;
    try {
      writer = new native.IndexWriter({
        ...params, ...(file !== undefined ? { path: file } : {}), memoryBudget: memoryMB * 2 ** 20,
        meta: JSON.stringify({ format: FORMAT, writer: `jamba-node ${packageVersion()}`, params }),
      });
    } catch (e) {
      throw indexError(e, name);
    }
    const abort = abortFlag(options.signal);
    // The next batch is read while the native side indexes the last one.
    let pending: Promise<void> | undefined;
    try {
      let batch: StoredPassage[] = [];
      const send = async () => {
        await pending;
        if (options.signal?.aborted) throw new AbortError();
        if (pending) options.onProgress?.(writer.passages);
        pending = writer.add(batch, abort.flag);
        batch = [];
      };
      const passages = given ?? corpusPassages(source, paths, options.chunk, options.signal);
      for await (const p of passages) {
        batch.push(p.title === undefined ? { id: p.id, text: p.text, source: p.source } : { id: p.id, title: p.title, text: p.text, source: p.source });
        if (batch.length === BATCH) await send();
      }
      if (batch.length) await send();
      await pending;
      if (options.signal?.aborted) throw new AbortError();
      if (writer.passages === 0) throw new CorpusError('has no text to index', file);
      const reader = await writer.finish(name, abort.flag);
      options.onProgress?.(reader.info().passages);
      return new Bm25Retriever(reader, params, file === undefined ? 'memory' : 'disk', name);
    } catch (e) {
      // A batch still being added ends (its outcome no longer matters) before the writer goes.
      await pending?.catch(() => undefined);
      writer.dispose();
      throw indexError(e, name);
    } finally {
      abort.release();
    }
  }

  /**
   * Opens an index written by `save` or `buildIndex`, searched in place. A JSON index saved by an
   * earlier version is indexed again in memory with the scoring it recorded (a warning says so when
   * that is exact lengths; `{ luceneNorms: true }` re-scores it as Pyserini). A SQLite index of an
   * earlier version is refused, with how to rebuild it.
   */
  static async load(file: string, options: Bm25LoadOptions = {}): Promise<Bm25Retriever> {
    if (typeof file !== 'string' || file === '') throw new InvalidArgumentError('file must be a path');
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
    if (options.luceneNorms !== undefined && typeof options.luceneNorms !== 'boolean') throw new InvalidArgumentError('luceneNorms must be a boolean');
    if (!fs.existsSync(file)) throw new CorpusError('does not exist', file);
    refuseSqlite(file);
    if (isJsonIndex(file)) {
      const { passages, params } = readJsonIndex(file);
      const scoring = options.luceneNorms === undefined ? params : { ...params, luceneNorms: options.luceneNorms };
      if (!scoring.luceneNorms)
        process.emitWarning(`${file} was saved by an earlier jamba-node with exact passage lengths, which are not Pyserini's scores; ` +
                            'load it with { luceneNorms: true } (jamba: index it again) to score as Pyserini does', { code: 'JAMBA_BM25_EXACT_LENGTHS' });
      return Bm25Retriever.build([], false, scoring, undefined, passages);
    }
    let reader: NativeIndexReader;
    try {
      reader = retrievalNative().openIndex(file);
    } catch (e) {
      throw indexError(e, file);
    }
    const info = reader.info();
    if (options.luceneNorms !== undefined && options.luceneNorms !== info.luceneNorms) {
      reader.close();
      throw new InvalidArgumentError(`${file} was built with ${info.luceneNorms ? "Lucene's norms" : 'exact lengths'}: build it again to change that`);
    }
    return new Bm25Retriever(reader, { k1: info.k1, b: info.b, analyzer: info.analyzer, luceneNorms: info.luceneNorms }, 'disk', file);
  }

  private open(): NativeIndexReader {
    if (!this.reader) throw new InvalidArgumentError(`${this.name} has been closed`);
    return this.reader;
  }

  /** Writes the index to `file` (one file; `Bm25Retriever.load` opens it). */
  save(file: string): void {
    if (typeof file !== 'string' || file === '') throw new InvalidArgumentError('file must be a path');
    try {
      this.open().writeTo(file);
    } catch (e) {
      throw indexError(e, file);
    }
  }

  /**
   * Reads the whole index and checks it against the checksums written with it (opening checks only
   * the small parts): throws a CorpusError naming the file if it was damaged since.
   */
  async verify(): Promise<void> {
    try {
      await this.open().verify();
    } catch (e) {
      throw indexError(e, this.name);
    }
  }

  /** Passages indexed. */
  get size(): number {
    return this.open().info().passages;
  }

  /** The stored passages in index order (passage numbers 0 to size − 1). */
  *passages(): Generator<CorpusPassage> {
    const reader = this.open();
    const n = reader.info().passages;
    for (let i = 0; i < n; i++) {
      try {
        yield reader.passage(i);
      } catch (e) {
        throw indexError(e, this.name);
      }
    }
  }

  /** Bytes the index occupies (in memory, or its file). */
  get bytes(): number {
    return this.open().info().bytes;
  }

  /** The passages whose terms best match `query` (Lucene's BM25), best first; fewer when fewer match. */
  async retrieve(query: string, k: number, options: RetrieveOptions = {}): Promise<Passage[]> {
    if (typeof query !== 'string') throw new InvalidArgumentError('query must be a string');
    return (await this.retrieveMany([query], k, options))[0]!;
  }

  /** `retrieve` for several queries at once, searched in parallel; results in query order. */
  async retrieveMany(queries: string[], k: number, options: RetrieveOptions = {}): Promise<Passage[][]> {
    if (!Array.isArray(queries) || queries.some((q) => typeof q !== 'string')) throw new InvalidArgumentError('queries must be an array of strings');
    if (!Number.isInteger(k) || k < 1) throw new InvalidArgumentError(`k must be a positive integer, got ${String(k)}`);
    if (options.signal?.aborted) throw new AbortError();
    const reader = this.open();
    if (queries.length === 0) return [];
    const abort = abortFlag(options.signal);
    try {
      const results = await reader.search(queries, k, true, abort.flag);
      return results.map((r) => r.passages!.map((s, i) => {
        const p: Passage = { id: s.id, text: s.text, score: r.scores[i]!, metadata: { source: s.source } };
        if (s.title !== undefined) p.title = s.title;
        return p;
      }));
    } catch (e) {
      throw indexError(e, this.name);
    } finally {
      abort.release();
    }
  }

  /** Releases the index (a file stays mapped until searches under way end). */
  close(): void {
    this.reader?.close();
    this.reader = null;
  }
}
