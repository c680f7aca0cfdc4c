/**
 * Generation over one or many prompts. Every step runs all unfinished sequences in one native
 * forward pass (prompts of different lengths are prefilled together, in chunks so that an abort
 * lands quickly), and each row is computed independently of the others, so a prompt's result in a
 * batch is exactly its result alone.
 */
import { AbortError, InvalidArgumentError } from './errors';
import type { ForwardOptions, ForwardResult, NativeSequence } from './native';
import { ResolvedSampling, Rng, SamplingOptions, resolveSampling, sampleToken } from './sampling';
import { withAbort } from './sequence';
import { TextStream } from './text-stream';
import type { JambaTokenizer } from './tokenizer';

export interface GenerateOptions extends SamplingOptions {
  /** Most new tokens to generate (default 256). */
  maxTokens?: number;
  /** Stop when the text contains one of these; the stop string is not returned. */
  stop?: string[];
  /** Also stop at these token ids (EOS ids always stop). */
  stopTokenIds?: number[];
  /** Cancels generation, including a prefill in progress. */
  signal?: AbortSignal;
}

export type FinishReason = 'eos' | 'length' | 'stop';

export interface GenerationResult {
  /** The continuation's text: decode(prompt + new) minus decode(prompt), cut at a stop string. */
  text: string;
  /** The new token ids (an EOS that ended generation is not included). */
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
}

/** Tokens of prompt per sequence per forward call while prefilling. */
export const PREFILL_CHUNK = 512;

interface Job {
  prompt: number[];
  sampling: ResolvedSampling;
  rng: Rng;
  maxTokens: number;
  stopIds: Set<number>;
  stream: TextStream;
  seq: NativeSequence;
  fed: number;            // prompt tokens evaluated so far
  context: number[];      // prompt + generated, for the repetition penalty
  generated: number[];
  finish: FinishReason | null;
}

export interface EngineContext {
  forward(sequences: NativeSequence[], tokens: Int32Array[], options: ForwardOptions): Promise<ForwardResult>;
  newSequence(): NativeSequence;
  tokenizer: JambaTokenizer;
  vocab: number;
  eosIds: number[];
}

export function resolveGenerateOptions(o: GenerateOptions, vocab: number): { maxTokens: number; stops: string[]; stopIds: number[]; sampling: ResolvedSampling } {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError('options must be an object');
  const maxTokens = o.maxTokens ?? 256;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new InvalidArgumentError(`maxTokens must be a non-negative integer, got ${String(maxTokens)}`);
  const stops = o.stop ?? [];
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s.length === 0))
    throw new InvalidArgumentError('stop must be an array of non-empty strings');
  const stopIds = o.stopTokenIds ?? [];
  if (!Array.isArray(stopIds) || stopIds.some((t) => !Number.isInteger(t) || t < 0 || t >= vocab))
    throw new InvalidArgumentError(`stopTokenIds must be token ids below ${vocab}`);
  return { maxTokens, stops, stopIds, sampling: resolveSampling(o) };
}

/**
 * Runs generation for every prompt and yields, after each step, the text pieces that became
 * ready (one string per prompt, '' when none). Returns the results when all have finished.
 */
export async function* generateSteps(ctx: EngineContext, prompts: number[][], options: GenerateOptions):
    AsyncGenerator<string[], GenerationResult[], void> {
  const opts = resolveGenerateOptions(options, ctx.vocab);
  const signal = options.signal;
  if (signal?.aborted) throw new AbortError();
  const jobs: Job[] = prompts.map((prompt, i) => {
    if (prompt.length === 0) throw new InvalidArgumentError(`prompt ${i} is empty: at least one token (BOS) is needed`);
    return {
      prompt,
      sampling: opts.sampling,
      rng: new Rng(opts.sampling.seed),
      maxTokens: opts.maxTokens,
      stopIds: new Set([...ctx.eosIds, ...opts.stopIds]),
      stream: new TextStream(ctx.tokenizer, prompt, opts.stops),
      seq: ctx.newSequence(),
      fed: 0,
      context: [...prompt],
      generated: [],
      finish: opts.maxTokens === 0 ? 'length' : null,
    };
  });
  try {
    // Prefill: every unfinished prompt advances by up to PREFILL_CHUNK tokens per pass.
    for (;;) {
      const pending = jobs.filter((j) => j.finish === null && j.fed < j.prompt.length);
      if (pending.length === 0) break;
      const chunks = pending.map((j) => Int32Array.from(j.prompt.slice(j.fed, j.fed + PREFILL_CHUNK)));
      const res = await withAbort(signal, (abort) => ctx.forward(pending.map((j) => j.seq), chunks, { logits: 'last', abort }));
      const pieces = jobs.map(() => '');
      pending.forEach((j, r) => {
        j.fed += chunks[r]!.length;
        if (j.fed === j.prompt.length) pieces[jobs.indexOf(j)] = accept(j, res.logits.subarray(r * ctx.vocab, (r + 1) * ctx.vocab));
      });
      if (pieces.some((p) => p)) yield pieces;
    }
    // Decode: one token for every unfinished sequence per pass.
    for (;;) {
      const active = jobs.filter((j) => j.finish === null);
      if (active.length === 0) break;
      const tokens = active.map((j) => Int32Array.of(j.generated[j.generated.length - 1]!));
      const res = await withAbort(signal, (abort) => ctx.forward(active.map((j) => j.seq), tokens, { logits: 'last', abort }));
      const pieces = jobs.map(() => '');
      active.forEach((j, r) => {
        pieces[jobs.indexOf(j)] = accept(j, res.logits.subarray(r * ctx.vocab, (r + 1) * ctx.vocab));
      });
      yield pieces;
    }
    const tails = jobs.map((j) => j.stream.finish());
    if (tails.some((t) => t)) yield tails;
    return jobs.map((j) => ({
      text: j.stream.fullText,
      tokens: j.generated,
      finishReason: j.finish ?? 'length',
      promptTokens: j.prompt.length,
    }));
  } finally {
    for (const j of jobs) j.seq.dispose();
  }
}

/** Samples the next token of a job from its logits row and updates its finish state. */
function accept(j: Job, logits: Float32Array): string {
  const id = sampleToken(logits, j.sampling, j.rng, j.context);
  if (j.stopIds.has(id)) {
    j.finish = 'eos';
    return '';
  }
  j.generated.push(id);
  j.context.push(id);
  const piece = j.stream.push(id);
  if (j.stream.stopped !== null) j.finish = 'stop';
  else if (j.generated.length >= j.maxTokens) j.finish = 'length';
  return piece;
}
