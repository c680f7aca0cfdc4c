/**
 * Contamination filtering for retrieval: passages that would leak the evaluated text into its
 * own context are passed over. The In-Context RALM paper removed the WikiText-103 articles from
 * its Wikipedia corpus by title (AI21's sparse_retrieval.py, 125 forbidden titles); here a passage
 * can also be excluded by id, or by sharing a run of `overlapWords` consecutive words (default
 * 32) with a given text. Works over any Retriever: it is asked for more passages (16 or 2k at
 * first, then twice as many each time, as the paper's code does) until k allowed ones are found
 * or it has no more.
 */
import { InvalidArgumentError } from '../errors';
import type { Passage, Retriever } from './types';

export interface ExcludeOptions {
  /** Passages with these titles. DPR's titles carry double quotes: quotes around a title are ignored on both sides. */
  titles?: string[];
  /** Passages with these ids. */
  ids?: string[];
  /** Passages sharing a run of `overlapWords` consecutive words (split on white space) with this text. */
  overlapText?: string;
  /** Words in a run that excludes (default 32). */
  overlapWords?: number;
}

/** The most passages asked of a retriever for one query while looking for allowed ones. */
const MAX_ASK = 4096;

const unquote = (t: string) => (t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1) : t);

/** FNV-1a of a word, 32 bits. */
function wordHash(w: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Hashes of every run of n words, as keys exact up to a check of the words themselves. */
function runHashes(words: string[], n: number): number[] {
  const out: number[] = [];
  if (words.length < n) return out;
  const hs = words.map(wordHash);
  // Two independent 26-bit polynomial hashes of the run, combined into one safe integer.
  const P1 = 1_000_003, P2 = 999_983, M = 2 ** 26;
  let p1 = 1, p2 = 1;
  for (let i = 1; i < n; i++) {
    p1 = (p1 * P1) % M;
    p2 = (p2 * P2) % M;
  }
  let a = 0, b = 0;
  for (let i = 0; i < words.length; i++) {
    if (i >= n) {
      a = (((a - ((hs[i - n]! % M) * p1) % M) % M) + M) % M;
      b = (((b - (((hs[i - n]! >>> 6) % M) * p2) % M) % M) + M) % M;
    }
    a = (a * P1 + (hs[i]! % M)) % M;
    b = (b * P2 + ((hs[i]! >>> 6) % M)) % M;
    if (i >= n - 1) out.push(a * M + b);
  }
  return out;
}

/** The exclusion rules, ready to test passages. */
export class Exclusion {
  private readonly titles: Set<string>;
  private readonly ids: Set<string>;
  private readonly words: string[] = [];
  private readonly runs = new Map<number, number>();  // run hash → first position in `words`
  private readonly n: number;

  constructor(o: ExcludeOptions, field = 'exclude') {
    if (o === null || typeof o !== 'object') throw new InvalidArgumentError(`${field} must be an object`);
    const strings = (v: unknown, name: string): string[] => {
      if (v === undefined) return [];
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new InvalidArgumentError(`${field}.${name} must be an array of strings`);
      return v as string[];
    };
    this.titles = new Set(strings(o.titles, 'titles').map(unquote));
    this.ids = new Set(strings(o.ids, 'ids'));
    this.n = o.overlapWords ?? 32;
    if (!Number.isInteger(this.n) || this.n < 1) throw new InvalidArgumentError(`${field}.overlapWords must be a positive integer, got ${String(o.overlapWords)}`);
    if (o.overlapText !== undefined) {
      if (typeof o.overlapText !== 'string') throw new InvalidArgumentError(`${field}.overlapText must be a string`);
      this.words = o.overlapText.split(/\s+/).filter(Boolean);
      runHashes(this.words, this.n).forEach((h, i) => {
        if (!this.runs.has(h)) this.runs.set(h, i);
      });
    }
  }

  /** Does it exclude anything at all? */
  get empty(): boolean {
    return this.titles.size === 0 && this.ids.size === 0 && this.runs.size === 0;
  }

  excludes(p: Passage): boolean {
    if (this.ids.has(p.id)) return true;
    if (p.title !== undefined && this.titles.has(unquote(p.title))) return true;
    if (this.runs.size === 0) return false;
    const words = p.text.split(/\s+/).filter(Boolean);
    return runHashes(words, this.n).some((h, i) => {
      const at = this.runs.get(h);
      if (at === undefined) return false;
      for (let j = 0; j < this.n; j++) if (words[i + j] !== this.words[at + j]) return false;
      return true;
    });
  }
}

/**
 * The retriever's k best passages that `exclusion` allows, best first, and how many passages
 * ranked above the last of them were passed over.
 */
export async function retrieveAllowed(retriever: Retriever, query: string, k: number, exclusion: Exclusion | null,
                                      signal?: AbortSignal): Promise<{ passages: Passage[]; excluded: number }> {
  const ask = async (n: number) => {
    const found = await retriever.retrieve(query, n, { signal });
    if (!Array.isArray(found) || found.some((p) => !p || typeof p.id !== 'string' || typeof p.text !== 'string'))
      throw new InvalidArgumentError('retrieval.retriever.retrieve() must return an array of passages, each with a string id and text');
    return found;
  };
  if (!exclusion || exclusion.empty) return { passages: (await ask(k)).slice(0, k), excluded: 0 };
  for (let n = Math.max(16, 2 * k); ; n *= 2) {
    const found = await ask(n);
    const passages: Passage[] = [];
    let excluded = 0;
    for (const p of found) {
      if (passages.length === k) break;
      if (exclusion.excludes(p)) excluded++;
      else passages.push(p);
    }
    if (passages.length === k || found.length < n || n >= MAX_ASK) return { passages, excluded };
  }
}
