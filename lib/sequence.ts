/**
 * A sequence: one stream of tokens with its own decode state (conv and SSM state per Mamba
 * layer, keys and values per attention layer). Evaluate tokens in any number of calls; the state
 * carries over, so prefill in chunks and single-token decode are the same operation. Calls on
 * different sequences made at the same time share forward passes (see scheduler.ts).
 */
import { types } from 'node:util';
import { DisposedError, InvalidArgumentError, JambaError } from './errors';
import type { LogitsMode, NativeSequence, SampleSpec } from './native';
import type { StepInput, StepOutput } from './scheduler';
import { Snapshot } from './snapshot';

export type { LogitsMode } from './native';

export interface EvaluateOptions {
  /** Which positions' logits to return (default 'last'). */
  logits?: LogitsMode;
  signal?: AbortSignal;
}

export interface RunOptions extends EvaluateOptions {
  /** Also return the final hidden states (after the last norm) of the rows whose logits are returned. */
  hidden?: boolean;
  /** CUDA: draw the next token on the device instead of returning the logits (logits 'last'). @internal */
  sample?: SampleSpec;
}

/** What `Sequence.run` feeds: soft-prompt vectors first, then tokens. At least one of them. */
export interface SequenceInput {
  /** n × hiddenSize floats that enter the first layer in place of token embeddings (soft prompts). */
  inputsEmbeds?: Float32Array;
  tokens?: ArrayLike<number>;
}

export interface RunResult {
  /** (rows × vocab) for 'all' — one row per embedding vector and token —, vocab for 'last', empty for 'none'. */
  logits: Float32Array;
  /** With `hidden`: the same rows' final hidden states (rows × hiddenSize). */
  hidden?: Float32Array;
  /** With `sample`: the token drawn on the device (the logits are then usually empty). */
  token?: number;
}

/** The id recorded in `Sequence.tokens` for a position fed by an embedding vector. */
export const EMBEDDING_POSITION = -1;

/** What a sequence needs from its model. @internal */
export interface SequenceHost {
  readonly vocab: number;
  readonly hiddenSize: number;
  /** Prompt rows per forward pass while prefilling. */
  readonly prefillChunk: number;
  step(seq: NativeSequence, input: StepInput, logits: LogitsMode, hidden: boolean, signal?: AbortSignal, sample?: SampleSpec): Promise<StepOutput>;
  fingerprint(): string;
  /** Called once when the sequence is disposed. */
  released(): void;
}

/** Validates soft-prompt vectors: a Float32Array of whole rows of finite values. */
export function checkEmbeds(embeds: unknown, hiddenSize: number, name: string): Float32Array {
  // util.types works across realms (a Float32Array from another context, e.g. a vm or a test runner).
  if (!types.isFloat32Array(embeds)) throw new InvalidArgumentError(`${name} must be a Float32Array of n × ${hiddenSize} values`);
  if (embeds.length % hiddenSize !== 0)
    throw new InvalidArgumentError(`${name} has ${embeds.length} values, not a whole number of rows of the hidden size ${hiddenSize}`);
  for (let i = 0; i < embeds.length; i++)
    if (!Number.isFinite(embeds[i]!)) throw new InvalidArgumentError(`${name}[${i}] = ${embeds[i]} is not finite`);
  return embeds;
}

/** Validates token ids and copies them into an Int32Array. */
export function toTokenArray(ids: ArrayLike<number>, vocab: number, name: string): Int32Array {
  if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number')
    throw new InvalidArgumentError(`${name} must be an array of token ids`);
  const out = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i]!;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= vocab)
      throw new InvalidArgumentError(`${name}[${i}] = ${String(v)} is not a token id in [0, ${vocab})`);
    out[i] = v;
  }
  return out;
}

export function checkLogitsMode(mode: unknown): LogitsMode {
  if (mode !== 'all' && mode !== 'last' && mode !== 'none') throw new InvalidArgumentError(`logits must be 'all', 'last' or 'none', got ${String(mode)}`);
  return mode;
}

export class Sequence {
  private handle: NativeSequence | null;
  private history: number[] = [];
  private last: Float32Array = new Float32Array(0);
  private pending = 0;

  /** @internal created by JambaModel.createSequence() */
  constructor(private readonly host: SequenceHost, handle: NativeSequence) {
    this.handle = handle;
  }

  /** Width of the vectors `run` takes as `inputsEmbeds`. */
  get hiddenSize(): number {
    return this.host.hiddenSize;
  }

  /** Rows per forward pass when a long input is fed in chunks (the model's prefillChunkTokens). */
  get prefillChunk(): number {
    return this.host.prefillChunk;
  }

  /** Tokens evaluated so far. */
  get position(): number {
    return this.native().position();
  }

  /** The tokens evaluated so far, in order (EMBEDDING_POSITION for a position fed by a vector). */
  get tokens(): readonly number[] {
    this.native();
    return this.history;
  }

  /** Logits after the last evaluated token (empty if the last call asked for none). */
  get lastLogits(): Float32Array {
    return this.last;
  }

  /** Bytes of state this sequence holds (grows with the KV cache of attention layers). */
  get stateBytes(): number {
    return this.native().bytes();
  }

  /**
   * Appends tokens and returns logits: `ids.length × vocab` for 'all', `vocab` for 'last', an
   * empty array for 'none'. Calls on one sequence run in the order they are made. If the pass
   * fails the sequence keeps whatever state it reached (empty after an abort of the whole pass).
   */
  async evaluate(ids: ArrayLike<number>, options: EvaluateOptions = {}): Promise<Float32Array> {
    return (await this.run({ tokens: ids }, options)).logits;
  }

  /**
   * Appends soft-prompt vectors and/or tokens (vectors first) and returns their logits, and their
   * final hidden states with `hidden`. `evaluate` is this with tokens only.
   */
  async run(input: SequenceInput, options: RunOptions = {}): Promise<RunResult> {
    if (input === null || typeof input !== 'object') throw new InvalidArgumentError('run() takes { tokens?, inputsEmbeds? }');
    const H = this.host.hiddenSize;
    const tokens = input.tokens === undefined ? new Int32Array(0) : toTokenArray(input.tokens, this.host.vocab, 'ids');
    const embeds = input.inputsEmbeds === undefined ? undefined : checkEmbeds(input.inputsEmbeds, H, 'inputsEmbeds');
    const mode = checkLogitsMode(options.logits ?? 'last');
    const hidden = options.hidden ?? false;
    if (typeof hidden !== 'boolean') throw new InvalidArgumentError('hidden must be a boolean');
    const embedRows = embeds ? embeds.length / H : 0;
    const rows = embedRows + tokens.length;
    if (rows === 0 && mode === 'last') throw new InvalidArgumentError('ids is empty: there is no last position');
    const seq = this.native();
    const fed = [...new Array<number>(embedRows).fill(EMBEDDING_POSITION), ...tokens];
    this.pending++;
    try {
      const out = await this.host.step(seq, { tokens, embeds: embedRows ? embeds : undefined, rows }, mode, hidden, options.signal, options.sample);
      this.history.push(...fed);
      const V = this.host.vocab;
      this.last = mode === 'none' || out.logits.length === 0 ? new Float32Array(0) : out.logits.slice(out.logits.length - V);
      return out;
    } catch (e) {
      this.resync(fed);
      throw e;
    } finally {
      this.pending--;
    }
  }

  /** Captures the state now (no evaluation may be pending on this sequence). */
  snapshot(): Snapshot {
    if (this.pending) throw new JambaError('busy', 'snapshot(): an evaluation on this sequence is still pending');
    const state = this.native().exportState();
    return new Snapshot(this.host.fingerprint(), Int32Array.from(this.history), state, this.last.slice());
  }

  /** Replaces this sequence's state by a snapshot of the same model. */
  restore(snapshot: Snapshot): void {
    if (!(snapshot instanceof Snapshot)) throw new InvalidArgumentError('restore() takes a Snapshot');
    if (this.pending) throw new JambaError('busy', 'restore(): an evaluation on this sequence is still pending');
    if (snapshot.fingerprint !== this.host.fingerprint())
      throw new InvalidArgumentError('the snapshot was taken on another model (its fingerprint differs)');
    this.native().importState(snapshot.state);
    this.history = Array.from(snapshot.tokens);
    this.last = snapshot.logits.slice();
  }

  /** Forgets every token: the sequence starts over. */
  reset(): void {
    this.native().reset();
    this.history = [];
    this.last = new Float32Array(0);
  }

  /** Frees the state now. Further use throws DisposedError. */
  dispose(): void {
    if (!this.handle) return;
    this.handle.dispose();
    this.handle = null;
    this.host.released();
  }

  /** @internal */
  native(): NativeSequence {
    if (!this.handle) throw new DisposedError('the sequence');
    return this.handle;
  }

  /** After a failed pass: the native state either advanced by these tokens or was reset. */
  private resync(tokens: number[]): void {
    if (!this.handle) return;
    const pos = this.handle.position();
    if (pos === this.history.length + tokens.length) this.history.push(...tokens);
    else if (pos !== this.history.length) this.history = this.history.slice(0, pos);
    this.last = new Float32Array(0);
  }
}
