/**
 * Generation for one prompt: prefill (in chunks, so an abort lands quickly, reusing a cached
 * prefix state when there is one), then one token per step until EOS, a stop string or the token
 * limit. Each step goes through the model's scheduler, so concurrent generations share forward
 * passes; a row never depends on the rows beside it, so a result is the same batched or alone.
 */
import { AbortError, InvalidArgumentError } from './errors';
import type { PrefixCache } from './prefix-cache';
import { ResolvedSampling, Rng, SamplingOptions, resolveSampling, sampleToken } from './sampling';
import type { Sequence } from './sequence';
import { TextStream } from './text-stream';
import type { JambaTokenizer } from './tokenizer';

export interface GenerateOptions extends SamplingOptions {
  /** Most new tokens to generate (default 256). */
  maxTokens?: number;
  /** Stop when the text contains one of these; the stop string is not returned. */
  stop?: string[];
  /** Also stop at these token ids (EOS ids always stop). */
  stopTokenIds?: number[];
  /** Report the log-probability of each chosen token and of the `logprobs` most likely ones (0–20). */
  logprobs?: number;
  /** Cancels generation, including a prefill in progress. */
  signal?: AbortSignal;
}

export type FinishReason = 'eos' | 'length' | 'stop';

export interface TokenLogprob {
  token: number;
  text: string;
  logprob: number;
  /** The most likely tokens at this step, best first (as many as `logprobs` asked). */
  top: Array<{ token: number; text: string; logprob: number }>;
}

export interface GenerationResult {
  /** The continuation's text: decode(prompt + new) minus decode(prompt), cut at a stop string. */
  text: string;
  /** The new token ids (an EOS that ended generation is not included). */
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
  /** Prompt tokens whose state came from the prefix cache instead of being evaluated. */
  cachedPromptTokens: number;
  /** With `logprobs`: one entry per generated token (and for an ending EOS). */
  logprobs?: TokenLogprob[];
}

/** Tokens of prompt per sequence per forward call while prefilling. */
export const PREFILL_CHUNK = 512;

export interface EngineContext {
  newSequence(): Sequence;
  tokenizer: JambaTokenizer;
  vocab: number;
  eosIds: number[];
  prefixCache: PrefixCache | null;
}

export interface ResolvedGenerate {
  maxTokens: number;
  stops: string[];
  stopIds: number[];
  logprobs: number | undefined;
  sampling: ResolvedSampling;
}

export function resolveGenerateOptions(o: GenerateOptions, vocab: number): ResolvedGenerate {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError('options must be an object');
  const maxTokens = o.maxTokens ?? 256;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new InvalidArgumentError(`maxTokens must be a non-negative integer, got ${String(maxTokens)}`);
  const stops = o.stop ?? [];
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s.length === 0))
    throw new InvalidArgumentError('stop must be an array of non-empty strings');
  const stopIds = o.stopTokenIds ?? [];
  if (!Array.isArray(stopIds) || stopIds.some((t) => !Number.isInteger(t) || t < 0 || t >= vocab))
    throw new InvalidArgumentError(`stopTokenIds must be token ids below ${vocab}`);
  const lp = o.logprobs;
  if (lp !== undefined && (!Number.isInteger(lp) || lp < 0 || lp > 20)) throw new InvalidArgumentError(`logprobs must be an integer in [0, 20], got ${String(lp)}`);
  return { maxTokens, stops, stopIds, logprobs: lp, sampling: resolveSampling(o) };
}

/** log-softmax of one row in float64: the chosen token's log-probability and the top n. */
function logprobsOf(row: Float32Array, token: number, n: number, tokenizer: JambaTokenizer): TokenLogprob {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let z = 0;
  for (let i = 0; i < row.length; i++) z += Math.exp(row[i]! - max);
  const lse = Math.log(z) + max;
  const top: TokenLogprob['top'] = [];
  if (n > 0) {
    const idx = Array.from({ length: row.length }, (_, i) => i).sort((a, b) => row[b]! - row[a]! || a - b).slice(0, n);
    for (const i of idx) top.push({ token: i, text: tokenizer.decode([i], { skipSpecialTokens: false }), logprob: row[i]! - lse });
  }
  return { token, text: tokenizer.decode([token], { skipSpecialTokens: false }), logprob: row[token]! - lse, top };
}

/**
 * Generates the continuation of `prompt`, yielding text pieces as they become safe to show, and
 * returns the result. The sequence is created here and disposed at the end, whatever happens.
 */
export async function* generateOne(ctx: EngineContext, prompt: number[], opts: ResolvedGenerate, signal?: AbortSignal):
    AsyncGenerator<string, GenerationResult, void> {
  if (prompt.length === 0) throw new InvalidArgumentError('the prompt is empty: at least one token (BOS) is needed');
  if (signal?.aborted) throw new AbortError();
  const rng = new Rng(opts.sampling.seed);
  const stopIds = new Set([...ctx.eosIds, ...opts.stopIds]);
  const stream = new TextStream(ctx.tokenizer, prompt, opts.stops);
  const generated: number[] = [];
  const context = [...prompt];
  const logprobs: TokenLogprob[] | undefined = opts.logprobs === undefined ? undefined : [];
  let finish: FinishReason | null = opts.maxTokens === 0 ? 'length' : null;
  let cached = 0;
  const seq = ctx.newSequence();
  try {
    if (finish === null) {
      const hit = ctx.prefixCache?.lookup(prompt);
      if (hit) {
        seq.restore(hit);
        cached = hit.tokens.length;
      }
      let last = seq.lastLogits;
      for (let fed = cached; fed < prompt.length; fed += PREFILL_CHUNK)
        last = await seq.evaluate(prompt.slice(fed, fed + PREFILL_CHUNK), { logits: 'last', signal });
      if (cached < prompt.length) ctx.prefixCache?.store(seq.snapshot());
      for (;;) {
        if (signal?.aborted) throw new AbortError();
        const id = sampleToken(last, opts.sampling, rng, context);
        if (logprobs) logprobs.push(logprobsOf(last, id, opts.logprobs!, ctx.tokenizer));
        if (stopIds.has(id)) {
          finish = 'eos';
          break;
        }
        generated.push(id);
        context.push(id);
        const piece = stream.push(id);
        if (stream.stopped !== null) finish = 'stop';
        else if (generated.length >= opts.maxTokens) finish = 'length';
        if (piece) yield piece;
        if (finish !== null) break;
        last = await seq.evaluate([id], { logits: 'last', signal });
      }
      // The state after everything evaluated (prompt and all but the last token), for the next turn.
      if (seq.position > prompt.length) ctx.prefixCache?.store(seq.snapshot());
    }
    const tail = stream.finish();
    if (tail) yield tail;
    const result: GenerationResult = { text: stream.fullText, tokens: generated, finishReason: finish ?? 'length', promptTokens: prompt.length, cachedPromptTokens: cached };
    if (logprobs) result.logprobs = logprobs;
    return result;
  } finally {
    seq.dispose();
  }
}

/** Runs a generation to its end and returns the result. */
export async function runToEnd(gen: AsyncGenerator<string, GenerationResult, void>): Promise<GenerationResult> {
  for (;;) {
    const r = await gen.next();
    if (r.done) return r.value;
  }
}
