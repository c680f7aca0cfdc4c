/**
 * What every BM25 index shares, wherever it lives: its parameters, what a passage is indexed
 * under, and the interface the retriever reads through (memory-index.ts, sqlite-index.ts).
 */
import { InvalidArgumentError } from '../errors';
import { AnalyzerName, analyze, isAnalyzerName } from './analyzer';
import type { Bm25Params, CollectionStats, TermPostings } from './bm25-score';
import type { CorpusPassage } from './corpus';

/** The parameters an index is built and scored with. */
export interface IndexParams extends Bm25Params {
  analyzer: AnalyzerName;
}

/** What the retriever reads from an index. */
export interface Bm25Store {
  /** Passages held. */
  readonly size: number;
  readonly stats: CollectionStats;
  postings(term: string): TermPostings | null;
  passage(doc: number): CorpusPassage;
  close(): void;
}

/** Passages indexed between progress reports (and yields to the event loop). */
export const PROGRESS_BATCH = 2000;

/**
 * A passage's terms with their counts, and its length (terms kept by the analyzer): its title and
 * its text form one field, as in Pyserini's "contents".
 */
export function passageTerms(p: { title?: string; text: string }, analyzer: AnalyzerName): { counts: Map<string, number>; length: number } {
  const terms = analyze(p.title ? `${p.title}\n${p.text}` : p.text, analyzer);
  const counts = new Map<string, number>();
  for (const t of terms) counts.set(t, (counts.get(t) ?? 0) + 1);
  return { counts, length: terms.length };
}

function param(v: unknown, name: string, dflt: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw new InvalidArgumentError(`${name} must be a non-negative number, got ${String(v)}`);
  return x;
}

/**
 * Parameters with their defaults (Pyserini's), each checked by name. `luceneNorms` defaults to
 * true for a new index; an index written before it existed was scored with exact lengths, and
 * keeps them (`legacyNorms`).
 */
export function resolveParams(o: { k1?: unknown; b?: unknown; analyzer?: unknown; luceneNorms?: unknown }, prefix = '', legacyNorms = false): IndexParams {
  const k1 = param(o.k1, `${prefix}k1`, 0.9), b = param(o.b, `${prefix}b`, 0.4);
  if (b > 1) throw new InvalidArgumentError(`${prefix}b must be in [0, 1], got ${b}`);
  const analyzer = o.analyzer ?? 'english';
  if (!isAnalyzerName(analyzer)) throw new InvalidArgumentError(`${prefix}analyzer must be 'english' or 'standard', got ${String(o.analyzer)}`);
  if (o.luceneNorms !== undefined && typeof o.luceneNorms !== 'boolean') throw new InvalidArgumentError(`${prefix}luceneNorms must be a boolean`);
  return { k1, b, analyzer, luceneNorms: o.luceneNorms ?? !legacyNorms };
}
