/**
 * A sequence: one stream of tokens with its own decode state (conv and SSM state per Mamba
 * layer, keys and values per attention layer). Evaluate tokens in any number of calls; the state
 * carries over, so prefill in chunks and single-token decode are the same operation.
 */
import { AbortError, DisposedError, InvalidArgumentError, fromNative } from './errors';
import type { ForwardOptions, ForwardResult, NativeSequence } from './native';

export type LogitsMode = 'all' | 'last' | 'none';

export interface EvaluateOptions {
  /** Which positions' logits to return (default 'last'). */
  logits?: LogitsMode;
  signal?: AbortSignal;
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

/** Runs `fn` with an abort flag the native pass polls between layers; maps errors to typed ones. */
export async function withAbort<T>(signal: AbortSignal | undefined, fn: (flag: Int32Array | undefined) => Promise<T>): Promise<T> {
  if (signal?.aborted) throw new AbortError();
  const flag = signal ? new Int32Array(new SharedArrayBuffer(4)) : undefined;
  const onAbort = () => flag && Atomics.store(flag, 0, 1);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await fn(flag);
  } catch (e) {
    throw fromNative(e);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

export class Sequence {
  private handle: NativeSequence | null;

  /** @internal created by JambaModel.createSequence() */
  constructor(
    private readonly forward: (s: NativeSequence[], t: Int32Array[], o: ForwardOptions) => Promise<ForwardResult>,
    handle: NativeSequence,
    private readonly vocab: number,
  ) {
    this.handle = handle;
  }

  /** Tokens evaluated so far. */
  get position(): number {
    return this.native().position();
  }

  /** Bytes of state this sequence holds (grows with the KV cache of attention layers). */
  get stateBytes(): number {
    return this.native().bytes();
  }

  /**
   * Appends tokens and returns logits: `ids.length × vocab` for 'all', `vocab` for 'last', an
   * empty array for 'none'. On abort or error the sequence is reset to empty.
   */
  async evaluate(ids: ArrayLike<number>, options: EvaluateOptions = {}): Promise<Float32Array> {
    const tokens = toTokenArray(ids, this.vocab, 'ids');
    const mode = options.logits ?? 'last';
    if (!['all', 'last', 'none'].includes(mode)) throw new InvalidArgumentError(`logits must be 'all', 'last' or 'none', got ${String(mode)}`);
    if (tokens.length === 0 && mode === 'last') throw new InvalidArgumentError('ids is empty: there is no last position');
    const seq = this.native();
    const res = await withAbort(options.signal, (abort) => this.forward([seq], [tokens], { logits: mode, abort }));
    return res.logits;
  }

  /** Forgets every token: the sequence starts over. */
  reset(): void {
    this.native().reset();
  }

  /** Frees the state now. Further use throws DisposedError. */
  dispose(): void {
    this.handle?.dispose();
    this.handle = null;
  }

  /** @internal */
  native(): NativeSequence {
    if (!this.handle) throw new DisposedError('the sequence');
    return this.handle;
  }
}
