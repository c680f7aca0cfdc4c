/**
 * Continuous batching. Every forward pass a caller asks for (a prefill chunk, a decode token, a
 * scoring run) is queued; whenever no pass is running, all queued requests of distinct sequences
 * are run as one native forward pass. Sequences join and leave between passes, so concurrent
 * generations share each step, and each row's result is exactly what it would be alone.
 */
import { AbortError, fromNative } from './errors';
import type { ForwardOptions, ForwardResult, LogitsMode, NativeSequence, SampleSpec } from './native';

/** What one sequence feeds in a pass: embedding rows first (soft prompts), then tokens. */
export interface StepInput {
  tokens: Int32Array;
  embeds?: Float32Array | undefined;
  /** Rows this input adds: embedding rows plus tokens. */
  rows: number;
}

/** A step's result: logits (and final hidden states when asked) of the rows it asked for. */
export interface StepOutput {
  /** Empty when the pass drew this step's token on the device and no other request needed logits. */
  logits: Float32Array;
  hidden?: Float32Array;
  /** With `sample`: the token drawn on the device. */
  token?: number;
}

interface StepRequest {
  seq: NativeSequence;
  input: StepInput;
  logits: LogitsMode;
  hidden: boolean;
  sample: SampleSpec | undefined;
  signal: AbortSignal | undefined;
  flag: Int32Array | undefined;
  resolve: (out: StepOutput) => void;
  reject: (e: unknown) => void;
}

export type PassRunner = (seqs: NativeSequence[], tokens: Int32Array[], options: ForwardOptions) => Promise<ForwardResult>;

export interface SchedulerStats {
  passes: number;
  rows: number;
  queued: number;
}

export class BatchScheduler {
  private queue: StepRequest[] = [];
  private running = false;
  private scheduled = false;      // a pump is pending (microtask or immediate)
  private expected = 1;           // requests the last pass served: who will likely ask again
  private passes = 0;
  private rows = 0;
  private drained: Array<() => void> = [];

  /** `maxPassTokens` bounds one pass (at least one request always runs). */
  constructor(
    private readonly run: PassRunner,
    private readonly vocab: number,
    private readonly hiddenSize: number,
    private readonly maxPassTokens = 4096,
  ) {}

  /**
   * Evaluates `input` on `seq` in the next pass and returns its logits (all rows, the last row,
   * or none), with the final hidden states of those rows when `hidden` is set. Requests for one
   * sequence run in the order they were made.
   */
  step(seq: NativeSequence, input: StepInput, logits: LogitsMode, hidden: boolean, signal?: AbortSignal, sample?: SampleSpec): Promise<StepOutput> {
    if (signal?.aborted) return Promise.reject(new AbortError());
    if (input.rows === 0) return Promise.resolve(hidden ? { logits: new Float32Array(0), hidden: new Float32Array(0) } : { logits: new Float32Array(0) });
    return new Promise<StepOutput>((resolve, reject) => {
      const req: StepRequest = { seq, input, logits, hidden, sample, signal, flag: undefined, resolve, reject };
      if (signal) {
        // The native pass polls this flag between layers; it stops once every request in it is aborted.
        req.flag = new Int32Array(new SharedArrayBuffer(4));
        const onAbort = () => {
          Atomics.store(req.flag!, 0, 1);
          const i = this.queue.indexOf(req);
          if (i >= 0) {
            this.queue.splice(i, 1);
            reject(new AbortError());
          }
        };
        signal.addEventListener('abort', onAbort, { once: true });
        const done = () => signal.removeEventListener('abort', onAbort);
        req.resolve = (v) => { done(); resolve(v); };
        req.reject = (e) => { done(); reject(e); };
      }
      this.queue.push(req);
      this.schedule();
    });
  }

  /** Resolves once nothing is queued or running. */
  async drain(): Promise<void> {
    while (this.running || this.scheduled || this.queue.length) await new Promise<void>((r) => this.drained.push(r));
  }

  get stats(): SchedulerStats {
    return { passes: this.passes, rows: this.rows, queued: this.queue.length };
  }

  /**
   * Starts the next pass as soon as everyone served by the previous one has asked again (a
   * microtask: no event-loop turn lost in single-sequence decode); otherwise after one turn of
   * the event loop (setImmediate), so late callers still join.
   */
  private schedule(): void {
    if (this.running) return;
    if (this.queue.length >= this.expected) {
      if (this.scheduled) return;
      this.scheduled = true;
      queueMicrotask(() => this.fire());
    } else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.fire());
    }
  }

  private fire(): void {
    if (!this.scheduled) return;
    this.scheduled = false;
    if (this.queue.length) void this.pump();
    else for (const r of this.drained.splice(0)) r();
  }

  private async pump(): Promise<void> {
    if (this.running || this.queue.length === 0) return;
    const batch: StepRequest[] = [];
    const seen = new Set<NativeSequence>();
    let tokens = 0;
    for (const r of this.queue) {
      if (seen.has(r.seq)) continue;  // one request per sequence per pass, in order
      if (batch.length > 0 && tokens + r.input.rows > this.maxPassTokens) continue;
      batch.push(r);
      seen.add(r.seq);
      tokens += r.input.rows;
    }
    this.queue = this.queue.filter((r) => !batch.includes(r));
    this.expected = batch.length;
    this.running = true;
    const mode: LogitsMode = batch.some((r) => r.logits === 'all') ? 'all' : batch.some((r) => r.logits === 'last') ? 'last' : 'none';
    const options: ForwardOptions = { logits: mode, abort: batch.map((r) => r.flag) };
    if (batch.some((r) => r.hidden)) options.hidden = true;
    if (batch.some((r) => r.input.embeds)) options.embeds = batch.map((r) => r.input.embeds);
    if (batch.some((r) => r.sample)) options.sample = batch.map((r) => r.sample);
    try {
      const res = await this.run(batch.map((r) => r.seq), batch.map((r) => r.input.tokens), options);
      this.passes++;
      this.rows += tokens;
      this.deliver(batch, mode, res);
    } catch (e) {
      const err = fromNative(e);
      for (const r of batch) r.reject(r.signal?.aborted ? new AbortError() : err);
    } finally {
      this.running = false;
      if (this.queue.length) this.schedule();
      else for (const r of this.drained.splice(0)) r();
    }
  }

  /** Splits the pass's outputs back to its requests; a request that was aborted meanwhile fails. */
  private deliver(batch: StepRequest[], mode: LogitsMode, res: ForwardResult): void {
    const V = this.vocab, H = this.hiddenSize;
    let row = 0;
    for (const [i, r] of batch.entries()) {
      const rows = mode === 'all' ? r.input.rows : mode === 'last' ? 1 : 0;  // what the pass returned for r
      const first = r.logits === 'last' ? row + rows - 1 : row;
      const n = r.logits === 'all' ? rows : r.logits === 'last' ? 1 : 0;
      if (r.signal?.aborted) {
        r.reject(new AbortError());
      } else {
        const out: StepOutput = { logits: res.logits.length ? res.logits.slice(first * V, (first + n) * V) : new Float32Array(0) };
        if (r.hidden) out.hidden = res.hidden!.slice(first * H, (first + n) * H);
        if (r.sample) out.token = res.sampled![i]!;
        r.resolve(out);
      }
      row += rows;
    }
  }
}
