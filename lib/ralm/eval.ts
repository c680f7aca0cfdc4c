/**
 * Perplexity under the In-Context RALM protocol (Ram et al., 2023; AI21's eval_lm.py): windows of
 * `window` tokens slide by `stride`; the first window scores all its tokens, each later one its
 * last `stride` (the tokens no earlier window scored). With retrieval, every window after the
 * first is preceded by the passage retrieved for the `queryTokens` tokens before its targets, and
 * the passage takes the place of the window's oldest tokens, so each window keeps its length.
 * Without a retriever the same windows are scored plainly: the two numbers cover the same tokens.
 * Every window starts with BOS. Windows are scored concurrently and share forward passes.
 */
import { AbortError, InvalidArgumentError } from '../errors';
import type { JambaModel } from '../model';
import type { Retriever } from '../retrieval/types';
import { scoreTokens } from '../score';
import { choosePassage } from './generate';
import { resolveRetrieval } from './options';
import { PassageStates } from './passages';
import type { RetrievalOptions } from './types';

export interface RalmEvalOptions extends Omit<RetrievalOptions, 'retriever' | 'maxContextTokens'> {
  /** Without one, the plain baseline over the same windows. */
  retriever?: Retriever;
  /** Tokens per window after the BOS (default 1024, the paper's). */
  window?: number;
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
  perplexity: number;
  tokens: number;
  windows: number;
  /** Windows that had a passage in front. */
  retrievals: number;
  /** Of those, the windows whose passage state came from the passage cache. */
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

export async function ralmPerplexity(model: JambaModel, ids: ArrayLike<number>, options: RalmEvalOptions = {}): Promise<RalmEvalResult> {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
  const t0 = performance.now();
  const window = options.window ?? 1024;
  const concurrency = options.concurrency ?? 8;
  if (!Number.isInteger(window) || window < 2) throw new InvalidArgumentError(`window must be an integer ≥ 2, got ${String(options.window)}`);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new InvalidArgumentError(`concurrency must be a positive integer, got ${String(options.concurrency)}`);
  // The baseline puts no passage in front, so the passage budget does not constrain its window.
  const r = resolveRetrieval({
    ...options, retriever: options.retriever ?? { retrieve: async () => [] }, maxContextTokens: window + 1,
    maxPassageTokens: options.retriever ? options.maxPassageTokens : 1,
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
  if (states.bos === null) throw new InvalidArgumentError('the model has no BOS token to start windows with');
  const windows = ralmWindows(n, window, r.stride);
  const sums = new Float64Array(windows.length);
  let scored = 0, retrievals = 0, cached = 0, done = 0, next = 0;

  const run = async (w: RalmWindow, idx: number) => {
    let head = [states.bos!];
    if (options.retriever && idx > 0) {
      const choice = await choosePassage(model, states, r, tokens.slice(w.begin, w.targetStart), options.signal);
      if (choice.passage) {
        head = await states.head(choice.passage, true);
        retrievals++;
      }
    }
    // The passage overwrites the oldest tokens of the window (after its BOS).
    const ctxStart = Math.min(w.targetStart, w.begin + head.length - 1);
    const { seq, cached: hit } = await states.open(head, [], options.signal);
    if (hit && head.length > 1) cached++;
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
  return { nll, perplexity: Math.exp(nll), tokens: scored, windows: windows.length, retrievals, cachedPassageStates: cached, ms: performance.now() - t0 };
}
