/**
 * Text analysis for BM25, as Lucene's EnglishAnalyzer does it (the analyzer of Pyserini's
 * indexes, which the In-Context RALM paper retrieved from), step for step: Lucene's own
 * StandardTokenizer (standard-tokenizer.ts runs its scanner tables), the English possessive
 * filter, Java's per-code-point lower-casing, Lucene's 33-word English stop set, and Lucene's
 * Porter stemmer (porter.ts). 'standard' stops after lower-casing (Lucene's StandardAnalyzer with
 * no stop words). test/retrieval-lucene.test.ts holds every step to real Lucene, term for term.
 */
import { porterStem } from './porter';
import { javaLowerCase, standardTokens } from './standard-tokenizer';

export { standardTokens };

export type AnalyzerName = 'english' | 'standard';

/** Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET. */
export const LUCENE_ENGLISH_STOP_WORDS: ReadonlySet<string> = new Set([
  'a', 'an', 'and', 'are', 'as', 'at', 'be', 'but', 'by', 'for', 'if', 'in', 'into', 'is', 'it', 'no', 'not', 'of', 'on', 'or',
  'such', 'that', 'the', 'their', 'then', 'there', 'these', 'they', 'this', 'to', 'was', 'will', 'with',
]);

/** EnglishPossessiveFilter: a trailing 's (any of Lucene's three apostrophes) goes. */
function dropPossessive(t: string): string {
  if (t.length >= 2 && (t.endsWith('s') || t.endsWith('S'))) {
    const a = t[t.length - 2];
    if (a === "'" || a === '\u2019' || a === '\uff07') return t.slice(0, -2);
  }
  return t;
}

const lower = javaLowerCase;

const MEMO_LIMIT = 1 << 19;
const english = new Map<string, string | null>();

/** One token through the English filters: its term, or null for a stop word. */
function englishTerm(token: string): string | null {
  let term = english.get(token);
  if (term === undefined) {
    const l = lower(dropPossessive(token));
    term = !l || LUCENE_ENGLISH_STOP_WORDS.has(l) ? null : porterStem(l);
    if (english.size >= MEMO_LIMIT) english.clear();
    english.set(token, term);
  }
  return term;
}

/** The terms a text is indexed (and queried) under. */
export function analyze(text: string, analyzer: AnalyzerName = 'english'): string[] {
  const tokens = standardTokens(text);
  if (analyzer === 'standard') return tokens.map(lower);
  const out: string[] = [];
  for (const t of tokens) {
    const term = englishTerm(t);
    if (term !== null) out.push(term);
  }
  return out;
}

/** Each distinct term of a text with its count, in first-seen order. */
export function termCounts(text: string, analyzer: AnalyzerName = 'english'): Map<string, number> {
  const counts = new Map<string, number>();
  for (const t of analyze(text, analyzer)) counts.set(t, (counts.get(t) ?? 0) + 1);
  return counts;
}

export function isAnalyzerName(v: unknown): v is AnalyzerName {
  return v === 'english' || v === 'standard';
}
