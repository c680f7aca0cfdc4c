/**
 * Text analysis for BM25, as Lucene's EnglishAnalyzer does it (the analyzer of Pyserini's indexes,
 * which the In-Context RALM paper retrieved from), step for step, in the native module
 * (csrc/retrieval/text_analyzer.cpp): Lucene's own StandardTokenizer run from its scanner tables,
 * the English possessive filter, Java's per-code-point lower-casing, Lucene's English stop set
 * and Lucene's Porter stemmer. 'standard' stops after lower-casing (Lucene's StandardAnalyzer with
 * no stop words). test/retrieval-lucene.test.ts holds every step to real Lucene, term for term.
 */
import { InvalidArgumentError } from '../errors';
import { AnalyzerName, LUCENE_ENGLISH_STOP_WORDS, retrievalNative } from './native-index';

export type { AnalyzerName };
export { LUCENE_ENGLISH_STOP_WORDS };

export function isAnalyzerName(v: unknown): v is AnalyzerName {
  return v === 'english' || v === 'standard';
}

/** The terms a text is indexed (and queried) under. */
export function analyze(text: string, analyzer: AnalyzerName = 'english'): string[] {
  if (typeof text !== 'string') throw new InvalidArgumentError('text must be a string');
  if (!isAnalyzerName(analyzer)) throw new InvalidArgumentError(`analyzer must be 'english' or 'standard', got ${String(analyzer)}`);
  return retrievalNative().analyze(text, analyzer);
}

/** The tokens of Lucene's StandardTokenizer, in order (at most 255 UTF-16 units each, as Lucene cuts them). */
export function standardTokens(text: string): string[] {
  if (typeof text !== 'string') throw new InvalidArgumentError('text must be a string');
  return retrievalNative().standardTokens(text);
}
