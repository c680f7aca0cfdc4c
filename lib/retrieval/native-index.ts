/**
 * The native retrieval module (csrc/retrieval/, bound in csrc/napi/retrieval_binding.cpp): Lucene's
 * analyzer, the index writer and the index reader. This file types it and hands it, once per
 * process, the tables it analyzes with: Lucene's StandardTokenizer scanner and Java's lower case
 * (third_party/lucene/standard-tokenizer.json, extracted from Lucene by scripts/lucene) and
 * Lucene's English stop words.
 */
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../native';
import { packageRoot } from '../paths';

export type AnalyzerName = 'english' | 'standard';

/** Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET. */
export const LUCENE_ENGLISH_STOP_WORDS: ReadonlySet<string> = new Set([
  'a', 'an', 'and', 'are', 'as', 'at', 'be', 'but', 'by', 'for', 'if', 'in', 'into', 'is', 'it', 'no', 'not', 'of', 'on', 'or',
  'such', 'that', 'the', 'their', 'then', 'there', 'these', 'they', 'this', 'to', 'was', 'will', 'with',
]);

export interface StoredPassage {
  id: string;
  text: string;
  title?: string;
  source: string;
}

export interface IndexInfo {
  passages: number;
  /** Passages with at least one term (Lucene's docCount). */
  docCount: number;
  sumLength: number;
  terms: number;
  k1: number;
  b: number;
  analyzer: AnalyzerName;
  luceneNorms: boolean;
  /** The JSON the writer recorded. */
  meta: string;
  bytes: number;
}

export interface NativeIndexReader {
  info(): IndexInfo;
  search(queries: string[], k: number, passages: boolean, abort?: Int32Array): Promise<Array<{ docs: Uint32Array; scores: Float32Array; passages?: StoredPassage[] }>>;
  passage(doc: number): StoredPassage;
  writeTo(path: string): void;
  verify(): Promise<void>;
  close(): void;
}

export interface NativeIndexWriter {
  add(passages: StoredPassage[], abort?: Int32Array): Promise<void>;
  /** Writes the index (to the writer's path, or in memory) and opens it; `name` is what errors call it. */
  finish(name: string, abort?: Int32Array): Promise<NativeIndexReader>;
  dispose(): void;
  readonly passages: number;
}

export interface NativeRetrieval {
  installTables(t: {
    classes: number; start: number; trans: Int16Array; accepting: Uint8Array; emits: Int8Array; cmap: Int32Array; lower: Int32Array; stopWords: string[];
  }): void;
  analyze(text: string, analyzer: AnalyzerName): string[];
  standardTokens(text: string): string[];
  /** Lucene's Porter stemmer alone, on a lower-case word. */
  porterStem(word: string): string;
  openIndex(path: string): NativeIndexReader;
  IndexWriter: new (o: { path?: string; k1: number; b: number; analyzer: AnalyzerName; luceneNorms: boolean; memoryBudget?: number; meta: string }) => NativeIndexWriter;
}

interface TableFile {
  classes: number;
  start: number;
  cmap: number[];
  trans: number[];
  accepting: number[];
  action: number[];
  typeOfAction: Record<string, number>;
  lower: number[];
}

let ready: NativeRetrieval | undefined;

/** The native retrieval module, its tables installed. */
export function retrievalNative(): NativeRetrieval {
  if (ready) return ready;
  const r = native().retrieval;
  const t = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'third_party', 'lucene', 'standard-tokenizer.json'), 'utf8')) as TableFile;
  r.installTables({
    classes: t.classes,
    start: t.start,
    trans: Int16Array.from(t.trans),
    accepting: Uint8Array.from(t.accepting),
    // Per state: the token type its action emits (−1: the match is skipped), −2 if it is not accepting.
    emits: Int8Array.from(t.action, (a, s) => ((t.accepting[s]! & 1) === 0 ? -2 : t.typeOfAction[String(a)] ?? -1)),
    cmap: Int32Array.from(t.cmap),
    lower: Int32Array.from(t.lower),
    stopWords: [...LUCENE_ENGLISH_STOP_WORDS],
  });
  ready = r;
  return r;
}

/** An Int32Array the native side polls: set when `signal` aborts (undefined without a signal). */
export function abortFlag(signal: AbortSignal | undefined): { flag?: Int32Array; release(): void } {
  if (!signal) return { release: () => {} };
  const flag = new Int32Array(1);
  const set = () => { flag[0] = 1; };
  if (signal.aborted) set();
  signal.addEventListener('abort', set, { once: true });
  return { flag, release: () => signal.removeEventListener('abort', set) };
}
