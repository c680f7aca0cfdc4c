/**
 * A BM25 index on disk, for corpora larger than memory (a DPR Wikipedia: 21 M passages), in one
 * SQLite file through better-sqlite3. SQLite's FTS5 is not used for the ranking: its bm25() fixes
 * k1 1.2 and b 0.75 and its tokenizers are not Lucene's, so the index stores its own postings,
 * made by the same analyzer as the memory index, and is scored by the same function
 * (bm25-score.ts): the two kinds rank alike.
 *
 * Tables: `meta` (format, parameters, passage count, total length), `passages` (doc number → id,
 * title, text, source) and `postings`: for each term, rows of at most 4,096 postings (one build
 * batch or less), each with its first and last passage number and a blob of varints
 * (passage-number delta, term frequency, passage length) in passage order. Building streams the
 * corpus and writes a batch at a time, so memory is bounded by the batch, not the corpus; the
 * file is written under a temporary name and renamed when complete. A query lists its terms'
 * blocks and reads only those the merge reaches (bm25-score.ts's topK skips the rest).
 */
import fs from 'node:fs';
import path from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { AbortError, CorpusError } from '../errors';
import { BLOCK_POSTINGS, CollectionStats, Postings, TermPostings } from './bm25-score';
import type { CorpusPassage } from './corpus';
import { Bm25Store, IndexParams, PROGRESS_BATCH, passageTerms, resolveParams } from './index-store';

const FORMAT = 'jamba-bm25-sqlite';
const VERSION = 2;
/** Passages whose postings are gathered in memory before they are written as one block per term (default). */
export const SQLITE_BATCH = 50_000;
const MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

type Database = BetterSqlite3.Database;

function openDatabase(file: string, options: BetterSqlite3.Options): Database {
  let Ctor: typeof BetterSqlite3;
  try {
    // Loaded on first use: the rest of the package does not need the native SQLite module.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    Ctor = require('better-sqlite3') as typeof BetterSqlite3;
  } catch (e) {
    throw new CorpusError(`needs the better-sqlite3 module, which failed to load: ${(e as Error).message}`, file);
  }
  try {
    return new Ctor(file, options);
  } catch (e) {
    throw new CorpusError(`cannot open the SQLite index: ${(e as Error).message}`, file);
  }
}

/** Is `file` a SQLite database (by its 16-byte header)? */
export function isSqliteFile(file: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return false;
  }
  try {
    const head = Buffer.alloc(16);
    return fs.readSync(fd, head, 0, 16, 0) === 16 && head.equals(MAGIC);
  } finally {
    fs.closeSync(fd);
  }
}

class VarintWriter {
  private buf = Buffer.alloc(1 << 16);
  length = 0;
  put(v: number): void {
    if (this.length + 5 > this.buf.length) {
      const bigger = Buffer.alloc(this.buf.length * 2);
      this.buf.copy(bigger, 0, 0, this.length);
      this.buf = bigger;
    }
    while (v >= 0x80) {
      this.buf[this.length++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.length++] = v;
  }
  take(): Buffer {
    const out = Buffer.from(this.buf.subarray(0, this.length));
    this.length = 0;
    return out;
  }
}

function decodeBlock(data: Uint8Array, first: number, n: number): Postings {
  const docs = new Int32Array(n), tfs = new Int32Array(n), lens = new Int32Array(n);
  let at = 0, doc = first;
  const next = () => {
    let v = 0, shift = 0, b: number;
    do {
      b = data[at++]!;
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return v;
  };
  for (let i = 0; i < n; i++) {
    doc += next();
    docs[i] = doc;
    tfs[i] = next();
    lens[i] = next();
  }
  return { docs, tfs, lens };
}

/**
 * Streams `passages` into a new SQLite index at `file`. Memory holds one batch of postings at a
 * time; the file appears only when the index is complete.
 */
export async function buildSqliteIndex(passages: AsyncIterable<CorpusPassage>, file: string, params: IndexParams,
                                       onProgress?: (done: number) => void, batchPassages = SQLITE_BATCH): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  fs.rmSync(tmp, { force: true });
  const db = openDatabase(tmp, {});
  try {
    db.pragma('journal_mode = OFF');
    db.pragma('synchronous = OFF');
    db.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE passages (doc INTEGER PRIMARY KEY, id TEXT NOT NULL, title TEXT, text TEXT NOT NULL, source TEXT NOT NULL);
             CREATE TABLE postings (term TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL);`);
    const addPassage = db.prepare('INSERT INTO passages (doc, id, title, text, source) VALUES (?, ?, ?, ?, ?)');
    const addBlock = db.prepare('INSERT INTO postings (term, first, last, n, data) VALUES (?, ?, ?, ?, ?)');
    let batch = new Map<string, number[]>();  // term → [doc, tf, length, doc, tf, length, ...]
    let doc = 0, sumLength = 0, flushed = 0;
    const w = new VarintWriter();
    const flush = db.transaction(() => {
      for (const [term, list] of batch) {
        for (let at = 0; at < list.length; at += 3 * BLOCK_POSTINGS) {
          const end = Math.min(list.length, at + 3 * BLOCK_POSTINGS);
          let prev = list[at]!;
          for (let i = at; i < end; i += 3) {
            w.put(list[i]! - prev);
            prev = list[i]!;
            w.put(list[i + 1]!);
            w.put(list[i + 2]!);
          }
          addBlock.run(term, list[at]!, list[end - 3]!, (end - at) / 3, w.take());
        }
      }
      batch = new Map();
      flushed = doc;
    });
    let pending: CorpusPassage[] = [];
    const write = db.transaction((ps: CorpusPassage[]) => {
      for (const p of ps) addPassage.run(doc++, p.id, p.title ?? null, p.text, p.source);
    });
    for await (const p of passages) {
      const { counts, length } = passageTerms(p, params.analyzer);
      const d = doc + pending.length;
      sumLength += length;
      for (const [t, tf] of counts) {
        let l = batch.get(t);
        if (!l) batch.set(t, (l = []));
        l.push(d, tf, length);
      }
      pending.push(p);
      if (pending.length === PROGRESS_BATCH) {
        write(pending);
        pending = [];
        if (doc - flushed >= batchPassages) flush();
        onProgress?.(doc);
        await new Promise((r) => setImmediate(r));
      }
    }
    write(pending);
    flush();
    if (doc === 0) throw new CorpusError('has no text to index', file);
    db.exec('CREATE INDEX postings_term ON postings (term, first)');
    const meta = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
    db.transaction(() => {
      for (const [k, v] of Object.entries({ format: FORMAT, version: VERSION, ...params, n: doc, sumLength })) meta.run(k, JSON.stringify(v));
    })();
    onProgress?.(doc);
    db.close();
    fs.renameSync(tmp, file);
  } catch (e) {
    if (db.open) db.close();
    fs.rmSync(tmp, { force: true });
    if (e instanceof CorpusError || e instanceof AbortError) throw e;
    throw new CorpusError(`cannot write the SQLite index: ${(e as Error).message}`, file);
  }
}

/** An index opened read-only from its file. */
export class SqliteStore implements Bm25Store {
  private constructor(
    private readonly db: Database,
    readonly params: IndexParams,
    readonly stats: CollectionStats,
    private readonly blockRows: BetterSqlite3.Statement<[string], { rowid: number; first: number; last: number; n: number }>,
    private readonly blockData: BetterSqlite3.Statement<[number], { data: Buffer }>,
    private readonly passageRow: BetterSqlite3.Statement<[number], { id: string; title: string | null; text: string; source: string }>,
  ) {}

  static open(file: string): SqliteStore {
    const db = openDatabase(file, { readonly: true, fileMustExist: true });
    try {
      const meta = new Map<string, unknown>();
      for (const row of db.prepare('SELECT key, value FROM meta').all() as Array<{ key: string; value: string }>) meta.set(row.key, JSON.parse(row.value));
      if (meta.get('format') !== FORMAT) throw new CorpusError(`is a SQLite file but not a ${FORMAT} index`, file);
      if (meta.get('version') !== VERSION) throw new CorpusError(`has index version ${String(meta.get('version'))}; this jamba-node reads version ${VERSION}`, file);
      const n = meta.get('n'), sumLength = meta.get('sumLength');
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || typeof sumLength !== 'number' || !(sumLength >= 0))
        throw new CorpusError('has malformed collection statistics', file);
      let params: IndexParams;
      try {
        params = resolveParams({ k1: meta.get('k1') ?? NaN, b: meta.get('b') ?? NaN, analyzer: meta.get('analyzer'), luceneNorms: meta.get('luceneNorms') }, 'params.');
      } catch (e) {
        throw new CorpusError(`has malformed BM25 parameters: ${(e as Error).message}`, file);
      }
      return new SqliteStore(db, params, { n, sumLength },
        db.prepare('SELECT rowid, first, last, n FROM postings WHERE term = ? ORDER BY first'),
        db.prepare('SELECT data FROM postings WHERE rowid = ?'),
        db.prepare('SELECT id, title, text, source FROM passages WHERE doc = ?'));
    } catch (e) {
      db.close();
      if (e instanceof CorpusError) throw e;
      throw new CorpusError(`is not a readable index: ${(e as Error).message}`, file);
    }
  }

  get size(): number {
    return this.stats.n;
  }

  postings(term: string): TermPostings | null {
    const rows = this.blockRows.all(term);
    if (!rows.length) return null;
    let df = 0;
    for (const r of rows) df += r.n;
    const { blockData } = this;
    // A block is read from the file only when the merge needs it.
    return { df, blocks: rows.map((r) => ({ first: r.first, last: r.last, load: () => decodeBlock(blockData.get(r.rowid)!.data, r.first, r.n) })) };
  }

  passage(doc: number): CorpusPassage {
    const r = this.passageRow.get(doc);
    if (!r) throw new CorpusError(`has no passage ${doc}`, this.db.name);
    const p: CorpusPassage = { id: r.id, text: r.text, source: r.source };
    if (r.title !== null) p.title = r.title;
    return p;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
