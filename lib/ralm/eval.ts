/**
 * Perplexity under the In-Context RALM protocol (Ram et al., 2023; AI21's eval_lm.py): windows of
 * `window` tokens slide by `stride`; the first window scores all its tokens, each later one its
 * last `stride` (the tokens no earlier window scored), the final partial window included. With
 * retrieval, every window after the first is preceded by the passage retrieved for the
 * `queryTokens` tokens before its targets, and the passage takes the place of the window's oldest
 * tokens, so each window keeps its length. Without a retriever the same windows are scored
 * plainly: the two numbers cover the same tokens. Windows are scored concurrently and share
 * forward passes.
 *
 * Two input layouts:
 * - 'bos' (default): every window starts with BOS, and a passage is `[BOS] title\ntext separator`;
 *   the model sees window + 1 positions and every token of the text is scored. Jamba was trained
 *   on documents that start with BOS, so this is its natural input.
 * - 'paper': exactly eval_lm.py's: no BOS, the passage (`title\ntext`, cut to maxPassageTokens)
 *   written over the window's first tokens with no separator, so the model sees `window`
 *   positions; the first window scores window − 1 tokens (its first token has no context).
 *
 * Word-level perplexity, the paper's reported number, is exp(Σ NLL / words) with words counted as
 * eval_lm.py does (the spaces in the evaluated text): give the text as `text`.
 */
import { AbortError, InvalidArgumentError } from '../errors';
import { countWords } from '../evaluate';
import type { Retriever } from '../retrieval/types';
import { scoreTokens } from '../score';
import { choosePassage } from './generate';
import { resolveRetrieval } from './options';
import { PassageStates } from './passages';
import type { RalmModel, RetrievalOptions } from './types';

export type RalmLayout = 'bos' | 'paper';

export interface RalmEvalOptions extends Omit<RetrievalOptions, 'retriever' | 'maxContextTokens'> {
  /** Without one, the plain baseline over the same windows. */
  retriever?: Retriever;
  /** Tokens per window (default 1024, the paper's), after the BOS in the 'bos' layout. */
  window?: number;
  /** 'bos' (default) or 'paper' (eval_lm.py's input exactly); see above. */
  layout?: RalmLayout;
  /** The evaluated text: its words (spaces, as eval_lm.py counts them) give `wordPerplexity`. */
  text?: string;
  /** Score only the first `maxTokens` tokens of the text. */
  maxTokens?: number;
  /** Windows in flight at once (default 8). */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (windowsDone: number, windows: number) => void;
}

export interface RalmEvalResult {
  /** Mean NLL in nats per scored token. */
  nll: number;
  /** Token-level perplexity, exp(nll): comparable within one tokenizer only. */
  perplexity: number;
  tokens: number;
  /** Words of `text` (its spaces), when it was given. */
  words?: number;
  /** exp(Σ NLL / words), the paper's number, when `text` was given. */
  wordPerplexity?: number;
  windows: number;
  layout: RalmLayout;
  /** Windows that had a passage in front. */
  retrievals: number;
  /** Passages the retriever ranked above the ones used that `exclude` passed over. */
  excluded: number;
  /** Of the windows with a passage, those whose passage state came from the passage cache. */
  cachedPassageStates: number;
  ms: number;
}

/** One window of the protocol: it sees tokens [begin, end) and scores [targetStart, end). */
export interface RalmWindow {
  begin: number;
  targetStart: number;
  end: number;
}

/** The protocol's windows over n tokens. */
export function ralmWindows(n: number, window: number, stride: number): RalmWindow[] {
  const out: RalmWindow[] = [];
  let prevEnd = 0;
  for (let begin = 0; ; begin += stride) {
    const end = Math.min(begin + window, n);
    out.push({ begin, targetStart: prevEnd, end });
    prevEnd = end;
    if (end === n) return out;
  }
}

export async function ralmPerplexity(model: RalmModel, ids: ArrayLike<number>, options: RalmEvalOptions = {}): Promise<RalmEvalResult> {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
  const t0 = performance.now();
  const window = options.window ?? 1024;
  const concurrency = options.concurrency ?? 8;
  const layout = options.layout ?? 'bos';
  if (!Number.isInteger(window) || window < 2) throw new InvalidArgumentError(`window must be an integer ≥ 2, got ${String(options.window)}`);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new InvalidArgumentError(`concurrency must be a positive integer, got ${String(options.concurrency)}`);
  if (layout !== 'bos' && layout !== 'paper') throw new InvalidArgumentError(`layout must be 'bos' or 'paper', got ${String(options.layout)}`);
  if (options.text !== undefined && typeof options.text !== 'string') throw new InvalidArgumentError('text must be a string');
  const paper = layout === 'paper';
  // The baseline puts no passage in front, so the passage budget does not constrain its window.
  const r = resolveRetrieval({
    ...options, retriever: options.retriever ?? { retrieve: async () => [] }, maxContextTokens: paper ? window : window + 1,
    maxPassageTokens: options.retriever ? options.maxPassageTokens : 1, separator: paper ? '' : options.separator,
  }, model);
  if (options.retriever && r.maxPassageTokens + r.stride >= window)
    throw new InvalidArgumentError(`window ${window} must exceed maxPassageTokens ${r.maxPassageTokens} + stride ${r.stride}`);
  const n = Math.min(ids.length, options.maxTokens ?? Infinity);
  const tokens = Array.from(ids).slice(0, n);
  const V = model.config.vocabSize;
  for (let i = 0; i < n; i++)
    if (!Number.isInteger(tokens[i]) || tokens[i]! < 0 || tokens[i]! >= V) throw new InvalidArgumentError(`ids[${i}] = ${String(tokens[i])} is not a token id in [0, ${V})`);
  if (n < 2) throw new InvalidArgumentError('the text has fewer than 2 tokens to score');
  const states = new PassageStates(model, r);
  if (!paper && states.bos === null) throw new InvalidArgumentError("the model has no BOS token to start windows with (use layout 'paper')");
  const windows = ralmWindows(n, window, r.stride);
  const sums = new Float64Array(windows.length);
  let scored = 0, retrievals = 0, excluded = 0, cached = 0, done = 0, next = 0;

  const run = async (w: RalmWindow, idx: number) => {
    const start = paper ? [] : [states.bos!];
    let head = start;
    if (options.retriever && idx > 0) {
      const choice = await choosePassage(model, states, r, tokens.slice(w.begin, w.targetStart), options.signal);
      excluded += choice.excluded;
      if (choice.passage) {
        head = await states.head(choice.passage, !paper);
        retrievals++;
      }
    }
    // The passage overwrites the oldest tokens of the window (after its BOS in the 'bos' layout).
    const ctxStart = Math.min(w.targetStart, w.begin + head.length - start.length);
    const { seq, cached: hit } = await states.open(head, [], options.signal);
    if (hit && head.length > start.length) cached++;
    // In the 'paper' layout the first window's first token has nothing before it: scoreTokens
    // on an empty sequence scores from the second token on.
    const res = await scoreTokens(seq, tokens.slice(ctxStart, w.targetStart), tokens.slice(w.targetStart, w.end), undefined, V, options.signal);
    sums[idx] = res.sum;
    scored += res.logprobs.length;
  };
  const worker = async () => {
    while (next < windows.length) {
      if (options.signal?.aborted) throw new AbortError();
      const idx = next++;
      await run(windows[idx]!, idx);
      options.onProgress?.(++done, windows.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, windows.length) }, worker));
  let sum = 0;
  for (const s of sums) sum += s;
  const nll = -sum / scored;
  const result: RalmEvalResult = {
    nll, perplexity: Math.exp(nll), tokens: scored, windows: windows.length, layout, retrievals, excluded, cachedPassageStates: cached, ms: 0,
  };
  if (options.text !== undefined) {
    result.words = countWords(options.text);
    result.wordPerplexity = Math.exp(-sum / result.words);
  }
  result.ms = performance.now() - t0;
  return result;
}
