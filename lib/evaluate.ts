/**
 * Perplexity: mean next-token negative log-likelihood of a token stream, scored in independent
 * windows of BOS + `window` tokens (the protocol of the embedded model's reference numbers). Every
 * token is scored, the final partial window too, unless `fullWindowsOnly`. Given the evaluated
 * text, the word-level perplexity too (words counted as AI21's eval_lm.py counts them).
 */
import { InvalidArgumentError } from './errors';
import { logSumExp } from './sampling';
import type { JambaModel } from './model';

export interface NllResult {
  /** Mean NLL in nats per scored token. */
  nll: number;
  /** Token-level perplexity, exp(nll): comparable within one tokenizer only. */
  perplexity: number;
  tokens: number;
  windows: number;
  /** Words of `text` (its spaces), when it was given. */
  words?: number;
  /** exp(Σ NLL / words), when `text` was given. */
  wordPerplexity?: number;
}

/** Words as eval_lm.py counts them for its word-level normalisation: `dataset.count(" ")`. */
export function countWords(text: string): number {
  let n = 0;
  for (let i = text.indexOf(' '); i >= 0; i = text.indexOf(' ', i + 1)) n++;
  return n;
}

/** Σ -log softmax(row)[target] over rows of `logits` ([rows, vocab]) against ids[1..]. */
export function sequenceNll(logits: Float32Array, ids: ArrayLike<number>, vocab: number): { sum: number; count: number } {
  let sum = 0;
  for (let p = 0; p + 1 < ids.length; p++) {
    const row = logits.subarray(p * vocab, (p + 1) * vocab);
    sum += logSumExp(row) - row[ids[p + 1]!]!;
  }
  return { sum, count: Math.max(0, ids.length - 1) };
}

/** NLL of one id sequence as given (its first token is context only). */
export async function evaluateNll(model: JambaModel, ids: ArrayLike<number>, options: { signal?: AbortSignal } = {}): Promise<NllResult> {
  const logits = await model.logits(ids, options);
  const { sum, count } = sequenceNll(logits, ids, model.config.vocabSize);
  return { nll: sum / count, perplexity: Math.exp(sum / count), tokens: count, windows: 1 };
}

export interface WindowOptions {
  /** Tokens scored per window, after the BOS (default 512). */
  window?: number;
  /** Score at most this many tokens (default all). */
  maxTokens?: number;
  /** Drop a final partial window (default false: every token is scored). */
  fullWindowsOnly?: boolean;
  /** The evaluated text, for `words` and `wordPerplexity`. */
  text?: string;
  signal?: AbortSignal;
  onProgress?: (scored: number, total: number) => void;
}

/** Mean NLL of `ids` (no BOS inside) in windows of BOS + window tokens. */
export async function windowedNll(model: JambaModel, ids: ArrayLike<number>, options: WindowOptions = {}): Promise<NllResult> {
  const window = options.window ?? 512;
  if (!Number.isInteger(window) || window < 1) throw new InvalidArgumentError(`window must be a positive integer, got ${String(window)}`);
  const bos = model.config.bosTokenId ?? model.tokenizer.bosTokenId;
  if (bos === null) throw new InvalidArgumentError('the model has no BOS token to start windows with');
  let total = Math.min(ids.length, options.maxTokens ?? Infinity);
  if (options.text !== undefined && typeof options.text !== 'string') throw new InvalidArgumentError('text must be a string');
  if (options.fullWindowsOnly) total -= total % window;
  if (total <= 0) throw new InvalidArgumentError(`the text has fewer than ${window} tokens to score`);
  let sum = 0, count = 0, windows = 0;
  for (let start = 0; start < total; start += window) {
    const chunk = [bos];
    for (let i = start; i < Math.min(total, start + window); i++) chunk.push(ids[i]!);
    const logits = await model.logits(chunk, { signal: options.signal });
    const r = sequenceNll(logits, chunk, model.config.vocabSize);
    sum += r.sum;
    count += r.count;
    windows++;
    options.onProgress?.(count, total);
  }
  const r: NllResult = { nll: sum / count, perplexity: Math.exp(sum / count), tokens: count, windows };
  if (options.text !== undefined) {
    r.words = countWords(options.text);
    r.wordPerplexity = Math.exp(sum / r.words);
  }
  return r;
}
