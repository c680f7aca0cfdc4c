/**
 * Indexes saved by earlier versions of jamba-node. A JSON index (the passages and parameters of a
 * memory index) is read and indexed again, with the scoring it recorded: those written before
 * Lucene's norms became the default used exact lengths, and keep them unless asked to re-score.
 * A SQLite index (the disk index before the native format) is refused with what to do instead.
 */
import fs from 'node:fs';
import { CorpusError, InvalidArgumentError } from '../errors';
import { IndexParams, resolveParams } from './bm25-params';
import type { CorpusPassage } from './corpus';

const FORMAT = 'jamba-bm25';
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/** The first bytes of a file ('' when it cannot be read). */
export function fileHead(file: string, n: number): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return Buffer.alloc(0);
  }
  try {
    const head = Buffer.alloc(n);
    return head.subarray(0, fs.readSync(fd, head, 0, n, 0));
  } finally {
    fs.closeSync(fd);
  }
}

/** Throws for a SQLite index of jamba-node 0.x: it cannot be read, and says how to rebuild it. */
export function refuseSqlite(file: string): void {
  if (fileHead(file, 16).equals(SQLITE_MAGIC))
    throw new CorpusError('is a SQLite index from an earlier jamba-node, which this version no longer reads: build it again with ' +
                          '`jamba index --corpus PATH --out FILE` (or Bm25Retriever.buildIndex), which is faster, smaller and scores as Pyserini', file);
}

/** Does the file start like a saved JSON index? */
export function isJsonIndex(file: string): boolean {
  return /^\s*\{\s*"format"\s*:\s*"jamba-bm25"/.test(fileHead(file, 64).toString('utf8'));
}

/** A JSON index's passages and recorded parameters (`luceneNorms` absent: exact lengths, as they were scored). */
export function readJsonIndex(file: string): { passages: CorpusPassage[]; params: IndexParams } {
  let raw: string;
  try {
    raw = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new CorpusError(`cannot read the index: ${(e as Error).message}`, file);
  }
  let data: { format?: unknown; version?: unknown; params?: Record<string, unknown>; passages?: unknown };
  try {
    data = JSON.parse(raw) as typeof data;
  } catch (e) {
    throw new CorpusError(`is not a saved index (not JSON: ${(e as Error).message})`, file);
  }
  if (data === null || typeof data !== 'object' || data.format !== FORMAT) throw new CorpusError(`is not a saved ${FORMAT} index`, file);
  if (data.version !== 1 && data.version !== 2) throw new CorpusError(`has index version ${String(data.version)}; this jamba-node reads versions 1 and 2`, file);
  const ps = data.passages as CorpusPassage[];
  if (!Array.isArray(ps) || ps.length === 0 || ps.some((p) => !p || typeof p.id !== 'string' || typeof p.text !== 'string' || typeof p.source !== 'string' || (p.title !== undefined && typeof p.title !== 'string')))
    throw new CorpusError('has a malformed passage list', file);
  try {
    // Version 1 (MiniSearch) indexes are analyzed again with the English analyzer; their BM25+ d had to be 0.
    if (data.version === 1 && data.params?.d) throw new InvalidArgumentError(`d is ${String(data.params.d)}: BM25+ is no longer supported`);
    const given = data.params ?? {};
    return { passages: ps, params: resolveParams({ ...(data.version === 1 ? {} : given), k1: given.k1 ?? NaN, b: given.b ?? NaN }, 'params.', true) };
  } catch (e) {
    throw new CorpusError(`has malformed BM25 parameters: ${(e as Error).message}`, file);
  }
}
