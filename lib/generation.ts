/**
 * Generation for one prompt: prefill (in chunks, so an abort lands quickly, reusing a cached
 * prefix state when there is one), then one token per step until EOS, a stop string or the token
 * limit. Each step goes through the model's scheduler, so concurrent generations share forward
 * passes; a row never depends on the rows beside it, so a result is the same batched or alone.
 */
import { ConstraintCompiler, ConstraintSpec, ResponseFormat, resolveConstraint } from './constraints/grammar';
import { AbortError, InvalidArgumentError } from './errors';
import type { ToolCall } from './tools';
import type { Retrieval } from './ralm/types';
import type { PrefixCache } from './prefix-cache';
import { ResolvedSampling, Rng, SamplingOptions, logSumExp, needsHost, resolveSampling, sampleToken } from './sampling';
import type { LogitsMode, SampleSpec } from './native';
import type { RetrievalOptions } from './ralm/types';
import type { RunResult, Sequence, SequenceInput } from './sequence';
import { TextStream } from './text-stream';
import type { JambaTokenizer } from './tokenizer';

export interface GenerateOptions extends SamplingOptions {
  /** Most new tokens to generate (default 256). */
  maxTokens?: number;
  /** Stop when the text contains this string or one of these; the stop string is not returned. */
  stop?: string | string[];
  /** Also stop at these token ids (EOS ids always stop). */
  stopTokenIds?: number[];
  /** Report the log-probability of each chosen token and of the `logprobs` most likely ones (0–20). */
  logprobs?: number;
  /** Cancels generation, including a prefill in progress. */
  signal?: AbortSignal;
  /** A soft prompt: n × hiddenSize floats fed before the prompt's tokens in place of embeddings. */
  inputsEmbeds?: Float32Array;
  /** In-Context RALM: retrieve a passage every `stride` tokens and put it before the prefix. */
  retrieval?: RetrievalOptions;
  /**
   * Constrains the output: `{ type: 'json_object' }` (any JSON object), `{ type: 'json_schema',
   * json_schema: { schema, strict } }` (JSON valid under the schema), or `{ type: 'text' }` (none).
   */
  responseFormat?: ResponseFormat;
  /** Constrains the output to a grammar in xgrammar's EBNF (llama.cpp's GBNF dialect), rooted at `root`. */
  grammar?: string;
  /** Called for each new token as it is chosen, with its log-probabilities when `logprobs` is set (an ending EOS is not a new token). */
  onToken?: (token: number, logprob?: TokenLogprob) => void;
  /**
   * The prefix-cache namespace of this prompt (OpenAI's `prompt_cache_key`): the prompt reuses
   * only states stored under the same key, and keyed states are evicted after unkeyed ones. It
   * never changes a result.
   */
  promptCacheKey?: string;
}

export type FinishReason = 'eos' | 'length' | 'stop' | 'tool_calls';

export interface TokenLogprob {
  token: number;
  /** The token's text, leading space included (a token that is part of a UTF-8 character shows as U+FFFD). */
  text: string;
  /** The bytes the token stands for (exact even where `text` cannot show them). */
  bytes: number[];
  logprob: number;
  /** The most likely tokens at this step, best first (as many as `logprobs` asked). */
  top: Array<{ token: number; text: string; bytes: number[]; logprob: number }>;
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
  /** With `retrieval`: each retrieval, where it happened and the passage it put in front. */
  retrievals?: Retrieval[];
  /** From `chat` with tools: the calls the reply makes (`text` is then the reply's text without them). */
  toolCalls?: ToolCall[];
}

/**
 * Feeds embedding rows then tokens to `seq` in chunks of `seq.prefillChunk` rows (so an abort
 * lands quickly) and returns what `mode` asks for over all of them: every row, the last row (the
 * sequence's last logits when there is nothing to feed), or nothing.
 */
export async function feed(seq: Sequence, embeds: Float32Array, tokens: Int32Array, mode: LogitsMode, hidden: boolean,
                           signal?: AbortSignal): Promise<RunResult> {
  const rowsOfEmbeds = embeds.length === 0 ? 0 : embeds.length / (seq.hiddenSize);
  const total = rowsOfEmbeds + tokens.length;
  if (total === 0) return { logits: mode === 'last' ? seq.lastLogits : new Float32Array(0) };
  const logits: Float32Array[] = [], states: Float32Array[] = [];
  let out: RunResult = { logits: new Float32Array(0) };
  const chunk = seq.prefillChunk;
  for (let r = 0; r < total; r += chunk) {
    const end = Math.min(total, r + chunk);
    const input: SequenceInput = {};
    if (r < rowsOfEmbeds) input.inputsEmbeds = embeds.subarray(r * seq.hiddenSize, Math.min(end, rowsOfEmbeds) * seq.hiddenSize);
    if (end > rowsOfEmbeds) input.tokens = tokens.subarray(Math.max(0, r - rowsOfEmbeds), end - rowsOfEmbeds);
    const chunkMode: LogitsMode = mode === 'all' ? 'all' : mode === 'last' && end === total ? 'last' : 'none';
    out = await seq.run(input, { logits: chunkMode, hidden: hidden && chunkMode !== 'none', signal });
    if (mode === 'all') {
      logits.push(out.logits);
      if (hidden) states.push(out.hidden!);
    }
  }
  if (mode !== 'all') return out;
  const res: RunResult = { logits: concat(logits) };
  if (hidden) res.hidden = concat(states);
  return res;
}

function concat(parts: Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export interface EngineContext {
  newSequence(): Sequence;
  hiddenSize: number;
  /** The model can draw tokens on the device (CUDA), so logits need not come back each step. */
  deviceSampling: boolean;
  /**
   * A grammar mask may be computed while a pass runs: the pass is on the GPU, or the native pool
   * leaves a core free. With every core in the pool, the mask's work on the main thread would
   * hold up a spinning worker and slow the pass by more than the mask costs (measured: +35% per
   * token on 2 cores, against +5% computed after the pass).
   */
  maskDuringPass: boolean;
  tokenizer: JambaTokenizer;
  vocab: number;
  eosIds: number[];
  prefixCache: PrefixCache | null;
  constraints: ConstraintCompiler;
}

export interface ResolvedGenerate {
  maxTokens: number;
  stops: string[];
  stopIds: number[];
  logprobs: number | undefined;
  sampling: ResolvedSampling;
  embeds: Float32Array | undefined;
  constraint: ConstraintSpec | null;
  onToken: ((token: number, logprob?: TokenLogprob) => void) | undefined;
  cacheKey: string | undefined;
}

export function resolveGenerateOptions(o: GenerateOptions, vocab: number): ResolvedGenerate {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError('options must be an object');
  const maxTokens = o.maxTokens ?? 256;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new InvalidArgumentError(`maxTokens must be a non-negative integer, got ${String(maxTokens)}`);
  const stops = typeof o.stop === 'string' ? [o.stop] : o.stop ?? [];
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s.length === 0))
    throw new InvalidArgumentError('stop must be a non-empty string or an array of them');
  const stopIds = o.stopTokenIds ?? [];
  if (!Array.isArray(stopIds) || stopIds.some((t) => !Number.isInteger(t) || t < 0 || t >= vocab))
    throw new InvalidArgumentError(`stopTokenIds must be token ids below ${vocab}`);
  const lp = o.logprobs;
  if (lp !== undefined && (!Number.isInteger(lp) || lp < 0 || lp > 20)) throw new InvalidArgumentError(`logprobs must be an integer in [0, 20], got ${String(lp)}`);
  if (o.onToken !== undefined && typeof o.onToken !== 'function') throw new InvalidArgumentError('onToken must be a function');
  if (o.promptCacheKey !== undefined && typeof o.promptCacheKey !== 'string') throw new InvalidArgumentError('promptCacheKey must be a string');
  return {
    maxTokens, stops, stopIds, logprobs: lp, sampling: resolveSampling(o, vocab), embeds: undefined, constraint: resolveConstraint(o.responseFormat, o.grammar),
    onToken: o.onToken, cacheKey: o.promptCacheKey,
  };
}

const lossy = new TextDecoder('utf-8');

/** log-softmax of one row in float64: the chosen token's log-probability and the top n. */
function logprobsOf(row: Float32Array, token: number, n: number, tokenizer: JambaTokenizer): TokenLogprob {
  const lse = logSumExp(row);
  const entry = (id: number) => {
    const bytes = tokenizer.tokenBytes(id);
    return { token: id, text: lossy.decode(bytes), bytes: Array.from(bytes), logprob: row[id]! - lse };
  };
  const top: TokenLogprob['top'] = [];
  if (n > 0) {
    const idx = Array.from({ length: row.length }, (_, i) => i).sort((a, b) => row[b]! - row[a]! || a - b).slice(0, n);
    for (const i of idx) top.push(entry(i));
  }
  return { ...entry(token), top };
}

/** What a step yields: the logits for the next token, or the next token itself, drawn on the device. */
export type StepResult = Float32Array | { token: number };

// Not `instanceof Float32Array`: the addon's arrays may come from another realm (vm, jest).
const isToken = (r: StepResult): r is { token: number } => typeof (r as { token?: unknown }).token === 'number';

/**
 * Where a generation's next tokens come from: `start` prefills and returns the logits for the
 * first new token (or that token); `next` takes the token just chosen and returns the same for
 * the one after it.
 */
export interface LogitsSource {
  /** `mask`, when given, makes the grammar mask for the token to draw (a source drawing on the device applies it there). */
  start(signal?: AbortSignal, mask?: () => Promise<Int32Array>): Promise<StepResult>;
  next(id: number, signal?: AbortSignal, mask?: () => Promise<Int32Array>): Promise<StepResult>;
  /** Called once generation ended normally (not on error or abort). */
  finish?(): void;
}

/**
 * The decode loop shared by plain and retrieval-augmented generation: sampling, EOS and stop
 * ids, stop strings, logprobs and UTF-8-safe text, yielding text pieces as they become safe to show.
 */
export async function* decodeLoop(ctx: EngineContext, prompt: number[], opts: ResolvedGenerate, source: LogitsSource,
                                  signal?: AbortSignal): AsyncGenerator<string, GenerationResult, void> {
  const rng = new Rng(opts.sampling.seed);
  const stopIds = new Set([...ctx.eosIds, ...opts.stopIds]);
  const stream = new TextStream(ctx.tokenizer, prompt, opts.stops);
  const generated: number[] = [];
  const context = [...prompt];
  const logprobs: TokenLogprob[] | undefined = opts.logprobs === undefined ? undefined : [];
  let finish: FinishReason | null = opts.maxTokens === 0 ? 'length' : null;
  const constraint = finish === null && opts.constraint ? await ctx.constraints.start(opts.constraint) : null;
  // The mask for the token being drawn, made once: by a source that draws on the device (before
  // its pass), or else here, during or after the pass (see EngineContext.maskDuringPass).
  let bitsFor: Promise<Int32Array> | undefined;
  const mask = constraint ? () => (bitsFor ??= constraint.bitmask()) : undefined;
  try {
    if (finish === null) {
      // The next mask depends only on the tokens accepted so far, so where a core is free it is
      // computed while the forward pass that makes the logits runs.
      const withMask = async (pass: Promise<StepResult>): Promise<[StepResult, Int32Array | undefined]> => {
        if (!mask) return [await pass, undefined];
        if (!ctx.maskDuringPass) {
          const result = await pass;
          return [result, await mask()];
        }
        pass.catch(() => undefined);  // a failed pass is reported by the await below, not as unhandled meanwhile
        await new Promise((r) => setImmediate(r));  // the pass has started on the native threads
        const bits = await mask();
        return [await pass, bits];
      };
      let [last, bits] = await withMask(source.start(signal, mask));
      for (;;) {
        if (signal?.aborted) throw new AbortError();
        // Logits are masked here; a token drawn on the device was drawn under the mask.
        if (constraint && !isToken(last)) {
          last = last.slice();  // the logits may be a sequence's own last row
          await constraint.mask(last, bits);
        }
        const id = isToken(last) ? last.token : sampleToken(last, opts.sampling, rng, context, prompt.length);
        if (logprobs && !isToken(last)) logprobs.push(logprobsOf(last, id, opts.logprobs!, ctx.tokenizer));
        if (stopIds.has(id)) {
          finish = 'eos';
          break;
        }
        constraint?.accept(id);
        bitsFor = undefined;
        generated.push(id);
        opts.onToken?.(id, logprobs?.[logprobs.length - 1]);
        context.push(id);
        const piece = stream.push(id);
        if (stream.stopped !== null) finish = 'stop';
        else if (generated.length >= opts.maxTokens) finish = 'length';
        if (piece) yield piece;
        if (finish !== null) break;
        [last, bits] = await withMask(source.next(id, signal, mask));
      }
      source.finish?.();
    }
  } finally {
    constraint?.dispose();
  }
  const tail = stream.finish();
  if (tail) yield tail;
  const result: GenerationResult = { text: stream.fullText, tokens: generated, finishReason: finish ?? 'length', promptTokens: prompt.length, cachedPromptTokens: 0 };
  if (logprobs) result.logprobs = logprobs;
  return result;
}

/**
 * Generates the continuation of `prompt` (after the soft prompt, if any), reusing a cached
 * prefix state when there is one. The sequence is created here and disposed at the end.
 */
export async function* generateOne(ctx: EngineContext, prompt: number[], opts: ResolvedGenerate, signal?: AbortSignal):
    AsyncGenerator<string, GenerationResult, void> {
  if (prompt.length === 0 && !opts.embeds) throw new InvalidArgumentError('the prompt is empty: at least one token (BOS) is needed');
  if (signal?.aborted) throw new AbortError();
  // A soft prompt is not part of the token key the prefix cache matches on.
  const cache = opts.embeds ? null : ctx.prefixCache;
  let cached = 0;
  // On CUDA, tokens are drawn on the device whenever the sampler needs nothing but the logits
  // (no penalties or bias, no logprobs): the logits then never cross to the host, and a
  // grammar's mask goes to the device instead.
  const sp = opts.sampling;
  const onDevice = ctx.deviceSampling && !needsHost(sp) && opts.logprobs === undefined;
  const seed = ((sp.seed % 2 ** 53) + 2 ** 53) % 2 ** 53;
  const spec = (step: number): SampleSpec => ({ temperature: sp.temperature, topK: sp.topK, topP: sp.topP, minP: sp.minP, seed, step });
  let drawn = 0;
  const seq = ctx.newSequence();
  const draw = async (tokens: number[], sig?: AbortSignal, mask?: () => Promise<Int32Array>): Promise<StepResult> => {
    const sample = spec(drawn++);
    if (mask) sample.mask = await mask();
    const out = await seq.run({ tokens }, { logits: 'last', signal: sig, sample });
    return { token: out.token! };
  };
  try {
    const source: LogitsSource = {
      async start(sig, mask) {
        const hit = cache?.lookup(prompt, opts.cacheKey);
        if (hit) {
          seq.restore(hit);
          cached = hit.tokens.length;
        }
        const embeds = opts.embeds ?? new Float32Array(0);
        let last: StepResult;
        if (onDevice && cached < prompt.length) {
          await feed(seq, embeds, Int32Array.from(prompt.slice(cached, -1)), 'none', false, sig);
          last = await draw(prompt.slice(-1), sig, mask);
        } else {
          last = (await feed(seq, embeds, Int32Array.from(prompt.slice(cached)), 'last', false, sig)).logits;
          drawn++;
        }
        if (cached < prompt.length) cache?.store(seq.snapshot(), opts.cacheKey);
        return last;
      },
      next: async (id, sig, mask) => (onDevice ? draw([id], sig, mask) : seq.evaluate([id], { logits: 'last', signal: sig })),
      // The state after everything evaluated (prompt and all but the last token), for the next turn.
      finish() {
        if (seq.position > prompt.length) cache?.store(seq.snapshot(), opts.cacheKey);
      },
    };
    const result = yield* decodeLoop(ctx, prompt, opts, source, signal);
    result.cachedPromptTokens = cached;
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
