/**
 * Passage chunking in the DPR style the In-Context RALM paper used: non-overlapping passages of
 * about 100 words. A passage keeps the text between its first and last word as written (line
 * breaks matter to a language model), and a word longer than `maxWordChars` (a binary blob, a
 * minified line) is cut into pieces so that no passage grows without bound.
 */
import { InvalidArgumentError } from '../errors';

export interface ChunkOptions {
  /** Words per passage (default 100). */
  words?: number;
  /** Longest run of non-space characters kept as one word (default 100). */
  maxWordChars?: number;
  /**
   * With a token counter: passages longer than `maxTokens` tokens are split further (halving
   * their words) until each fits.
   */
  maxTokens?: number;
  countTokens?: (text: string) => Promise<number>;
}

export interface ResolvedChunkOptions {
  words: number;
  maxWordChars: number;
}

export function resolveChunkOptions(o: ChunkOptions = {}): ResolvedChunkOptions {
  const words = o.words ?? 100;
  const maxWordChars = o.maxWordChars ?? 100;
  if (!Number.isInteger(words) || words < 1) throw new InvalidArgumentError(`chunk.words must be a positive integer, got ${String(words)}`);
  if (!Number.isInteger(maxWordChars) || maxWordChars < 1) throw new InvalidArgumentError(`chunk.maxWordChars must be a positive integer, got ${String(maxWordChars)}`);
  if (o.maxTokens !== undefined && (!Number.isInteger(o.maxTokens) || o.maxTokens < 1 || typeof o.countTokens !== 'function'))
    throw new InvalidArgumentError('chunk.maxTokens must be a positive integer and comes with a countTokens function');
  return { words, maxWordChars };
}

/** [start, end) character spans of the words of `text`, long words cut at `maxWordChars`. */
export function wordSpans(text: string, maxWordChars: number): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  for (const m of text.matchAll(/\S+/g)) {
    const start = m.index;
    const end = start + m[0].length;
    for (let s = start; s < end; s += maxWordChars) spans.push([s, Math.min(end, s + maxWordChars)]);
  }
  return spans;
}

/** Splits `text` into passages of `words` words (the last one may be shorter). */
export function chunkWords(text: string, o: ResolvedChunkOptions): string[] {
  const spans = wordSpans(text, o.maxWordChars);
  const out: string[] = [];
  for (let i = 0; i < spans.length; i += o.words) {
    const last = spans[Math.min(spans.length, i + o.words) - 1]!;
    out.push(text.slice(spans[i]![0], last[1]));
  }
  return out;
}

/** A passage of `words` words as is, or (with a token counter) split until each piece has at most maxTokens tokens. */
export async function fitTokens(passage: string, options: ChunkOptions, o: ResolvedChunkOptions = resolveChunkOptions(options)): Promise<string[]> {
  if (options.maxTokens === undefined || !options.countTokens) return [passage];
  const out: string[] = [];
  const fit = async (p: string, words: number): Promise<void> => {
    if (words <= 1 || (await options.countTokens!(p)) <= options.maxTokens!) {
      out.push(p);
      return;
    }
    const half = Math.ceil(words / 2);
    for (const q of chunkWords(p, { ...o, words: half })) await fit(q, half);
  };
  await fit(passage, o.words);
  return out;
}

/** chunkWords, then (with a token counter) splits passages until each has at most maxTokens tokens. */
export async function chunkText(text: string, options: ChunkOptions = {}): Promise<string[]> {
  const o = resolveChunkOptions(options);
  const out: string[] = [];
  for (const p of chunkWords(text, o)) out.push(...(await fitTokens(p, options, o)));
  return out;
}
