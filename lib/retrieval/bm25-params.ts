/** The parameters a BM25 index is built and scored with, checked by name, with Pyserini's defaults. */
import { InvalidArgumentError } from '../errors';
import { AnalyzerName, isAnalyzerName } from './analyzer';

export interface IndexParams {
  /** Term-frequency saturation (Pyserini: 0.9). */
  k1: number;
  /** Length normalization (Pyserini: 0.4). */
  b: number;
  analyzer: AnalyzerName;
  /** Passage lengths in Lucene's one-byte norm, as Pyserini's scores have them; false: exact lengths (not Pyserini's). */
  luceneNorms: boolean;
}

function param(v: unknown, name: string, dflt: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw new InvalidArgumentError(`${name} must be a non-negative number, got ${String(v)}`);
  return x;
}

/**
 * Parameters with their defaults (Pyserini's), each checked by name. `luceneNorms` defaults to
 * true; an index saved before it existed was scored with exact lengths, and keeps them
 * (`legacyNorms`).
 */
export function resolveParams(o: { k1?: unknown; b?: unknown; analyzer?: unknown; luceneNorms?: unknown }, prefix = '', legacyNorms = false): IndexParams {
  const k1 = param(o.k1, `${prefix}k1`, 0.9), b = param(o.b, `${prefix}b`, 0.4);
  if (b > 1) throw new InvalidArgumentError(`${prefix}b must be in [0, 1], got ${b}`);
  const analyzer = o.analyzer ?? 'english';
  if (!isAnalyzerName(analyzer)) throw new InvalidArgumentError(`${prefix}analyzer must be 'english' or 'standard', got ${String(o.analyzer)}`);
  if (o.luceneNorms !== undefined && typeof o.luceneNorms !== 'boolean') throw new InvalidArgumentError(`${prefix}luceneNorms must be a boolean`);
  return { k1, b, analyzer, luceneNorms: o.luceneNorms ?? !legacyNorms };
}
