/**
 * Training through the frozen model: the gradient of a loss with respect to the model's input
 * rows (soft prompts, generated prompts, a connector's output) and initial states, never its
 * weights. `forwardForGrad` runs the forward and keeps one residual row per layer per token; the
 * tape's `backward` recomputes each layer and runs the backward of every op (csrc/cpu/*_back).
 * Costs about three forwards. See docs/training.md.
 */
import { AbortError, InvalidArgumentError, JambaError, fromNative } from './errors';
import type { NativeGradTape, NativeModel, NativeSequence } from './native';
import { Snapshot } from './snapshot';
import type { Sequence } from './sequence';

/** Rows of an example, in order: token ids, or vectors fed in place of token embeddings (n × hiddenSize). */
export type Segment = { ids: ArrayLike<number> } | { embeds: Float32Array };

/** Explicit cross-entropy targets: row `rows[i]` (an index into the example's rows) predicts token `ids[i]`, weighted (default 1). */
export interface GradTargets {
  rows: ArrayLike<number>;
  ids: ArrayLike<number>;
  weights?: ArrayLike<number>;
}

export interface GradExample {
  segments: Segment[];
  /** 'next': every row whose next row is a token predicts that token. Absent: no loss (cotangents only). */
  targets?: 'next' | GradTargets;
  /** The state before the rows (a snapshot of this model), or 'zero' (default). */
  initialState?: Snapshot | 'zero';
}

export interface ForwardForGradOptions {
  /** 'mean' (default): the loss is Σ w·CE / Σ w over the whole batch; 'sum': Σ w·CE. */
  reduction?: 'mean' | 'sum';
  /** Stop after this many layers: `hidden` is then the residual stream there (an early exit; no targets). */
  stopAtLayer?: number;
  /**
   * Also return the final hidden states (after the final norm, or the early exit's), every row's
   * logits, and the experts each row was routed to in each MoE layer.
   */
  outputs?: Array<'hidden' | 'logits' | 'routing'>;
  /**
   * 'layer' (default): keep one residual row per layer per token and recompute each layer in the
   * backward. 'none': keep every layer's intermediates instead, about a third less work for
   * several rows of activations per layer per token (small models and examples).
   */
  checkpointing?: 'layer' | 'none';
  signal?: AbortSignal;
}

/** The gradient of one layer's initial state: conv and ssm for a Mamba layer, k and v (the prefix's positions) for attention. */
export interface LayerStateGrad {
  conv: Float32Array;
  ssm: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

export interface BackwardOptions {
  /** Which segments get a gradient: 'embeds' (default; ids segments get null) or 'all' (token rows too). */
  segments?: 'embeds' | 'all';
  /** Also return the gradient of each example's initial state, layer by layer. */
  initialState?: boolean;
  signal?: AbortSignal;
}

export interface BackwardResult {
  /** grads[i][j]: example i's segment j (n × hiddenSize), or null. */
  segments: Array<Array<Float32Array | null>>;
  /** With `initialState`: per example, per layer. */
  initialState?: LayerStateGrad[][];
}

/** What the model lends to a gradient computation. @internal */
export interface GradHost {
  readonly hiddenSize: number;
  readonly vocabSize: number;
  readonly numLayers: number;
  native(): NativeModel;
  createSequence(): Sequence;
  /** Runs a native job outside the batch scheduler; dispose() waits for it. */
  job<T>(run: () => Promise<T>): Promise<T>;
}

interface Prepared {
  ids: Int32Array;
  embeds: Float32Array;
  targetRows: Int32Array;
  targetIds: Int32Array;
  targetWeights: Float32Array;
  initial?: Snapshot;
  segmentRows: Array<[from: number, to: number, kind: 'ids' | 'embeds']>;
}

function abortFlag(signal: AbortSignal | undefined): { flag?: Int32Array; done: () => void } {
  if (!signal) return { done: () => undefined };
  if (signal.aborted) throw new AbortError();
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const on = () => Atomics.store(flag, 0, 1);
  signal.addEventListener('abort', on, { once: true });
  return { flag, done: () => signal.removeEventListener('abort', on) };
}

function checkOptions(o: object, what: string, known: string[]): void {
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new InvalidArgumentError(`${what}: unknown option '${k}'`);
}

/** Checks one example and lays it out as the native pass takes it. */
function prepare(host: GradHost, ex: GradExample, i: number): Prepared {
  const H = host.hiddenSize, V = host.vocabSize, where = `examples[${i}]`;
  if (ex === null || typeof ex !== 'object') throw new InvalidArgumentError(`${where} must be an object`);
  checkOptions(ex, where, ['segments', 'targets', 'initialState']);
  if (!Array.isArray(ex.segments) || ex.segments.length === 0) throw new InvalidArgumentError(`${where}.segments must be a non-empty array`);
  const ids: number[] = [], embeds: Float32Array[] = [];
  const segmentRows: Prepared['segmentRows'] = [];
  ex.segments.forEach((seg, j) => {
    const w = `${where}.segments[${j}]`;
    const from = ids.length;
    if (seg !== null && typeof seg === 'object' && 'ids' in seg && !('embeds' in seg)) {
      const list = Array.from(seg.ids ?? []);
      list.forEach((id, k) => {
        if (!Number.isInteger(id) || id < 0 || id >= V) throw new InvalidArgumentError(`${w}.ids[${k}] = ${String(id)} is not a token id below ${V}`);
        ids.push(id);
      });
      segmentRows.push([from, ids.length, 'ids']);
    } else if (seg !== null && typeof seg === 'object' && 'embeds' in seg && !('ids' in seg)) {
      const e = seg.embeds;
      if (!(e instanceof Float32Array) && Object.prototype.toString.call(e) !== '[object Float32Array]')
        throw new InvalidArgumentError(`${w}.embeds must be a Float32Array of n × ${H} values`);
      if (e.length % H !== 0) throw new InvalidArgumentError(`${w}.embeds has ${e.length} values, not a whole number of rows of ${H}`);
      for (let k = 0; k < e.length; k++) if (!Number.isFinite(e[k]!)) throw new InvalidArgumentError(`${w}.embeds[${k}] = ${e[k]} is not finite`);
      for (let k = 0; k < e.length / H; k++) ids.push(-1);
      embeds.push(e);
      segmentRows.push([from, ids.length, 'embeds']);
    } else {
      throw new InvalidArgumentError(`${w} must be { ids } or { embeds }`);
    }
  });
  if (ids.length === 0) throw new InvalidArgumentError(`${where} has no rows`);
  const rows: number[] = [], tids: number[] = [], weights: number[] = [];
  const t = ex.targets;
  if (t === 'next') {
    for (let r = 0; r + 1 < ids.length; r++)
      if (ids[r + 1]! >= 0) {
        rows.push(r);
        tids.push(ids[r + 1]!);
        weights.push(1);
      }
  } else if (t !== undefined) {
    if (t === null || typeof t !== 'object') throw new InvalidArgumentError(`${where}.targets must be 'next' or { rows, ids, weights? }`);
    checkOptions(t, `${where}.targets`, ['rows', 'ids', 'weights']);
    const r = Array.from(t.rows ?? []), d = Array.from(t.ids ?? []);
    const w = t.weights === undefined ? r.map(() => 1) : Array.from(t.weights);
    if (r.length !== d.length || w.length !== r.length) throw new InvalidArgumentError(`${where}.targets: rows, ids and weights must have one entry each`);
    r.forEach((row, k) => {
      if (!Number.isInteger(row) || row < 0 || row >= ids.length) throw new InvalidArgumentError(`${where}.targets.rows[${k}] = ${String(row)} is not a row of the example (${ids.length} rows)`);
      if (!Number.isInteger(d[k]) || d[k]! < 0 || d[k]! >= V) throw new InvalidArgumentError(`${where}.targets.ids[${k}] = ${String(d[k])} is not a token id below ${V}`);
      if (!Number.isFinite(w[k]) || w[k]! < 0) throw new InvalidArgumentError(`${where}.targets.weights[${k}] must be a finite number ≥ 0`);
    });
    rows.push(...r);
    tids.push(...d);
    weights.push(...w);
  }
  const init = ex.initialState;
  if (init !== undefined && init !== 'zero' && !(init instanceof Snapshot)) throw new InvalidArgumentError(`${where}.initialState must be a Snapshot or 'zero'`);
  const all = new Float32Array(embeds.reduce((n, e) => n + e.length, 0));
  let o = 0;
  for (const e of embeds) {
    all.set(e, o);
    o += e.length;
  }
  const p: Prepared = {
    ids: Int32Array.from(ids), embeds: all, targetRows: Int32Array.from(rows), targetIds: Int32Array.from(tids),
    targetWeights: Float32Array.from(weights), segmentRows,
  };
  if (init instanceof Snapshot) p.initial = init;
  return p;
}

/** A training forward's tape: the loss and outputs, and one `backward`. */
export class GradTape {
  private handle: NativeGradTape | null;

  /** @internal */
  constructor(
    private readonly host: GradHost,
    handle: NativeGradTape,
    private readonly layout: Prepared[],
    /** The loss: Σ w·CE over every target of the batch, divided by Σ w for 'mean'. */
    readonly loss: number,
    /** Each example's share of `loss`. */
    readonly exampleLoss: Float64Array,
    /** With outputs 'hidden': per example, rows × hiddenSize. */
    readonly hidden: Float32Array[] | undefined,
    /** With outputs 'logits': per example, rows × vocabSize. */
    readonly logits: Float32Array[] | undefined,
    /** With outputs 'routing': per layer (null for a dense one), per example, rows × top-k expert ids in the order chosen. */
    readonly routing: Array<Int32Array[] | null> | undefined,
  ) {
    this.handle = handle;
  }

  /**
   * The gradient of `loss` plus ⟨cotangents.hidden, hidden⟩ with respect to the examples' vector
   * segments (and token rows, with `segments: 'all'`) and, with `initialState`, their initial
   * states. Runs once; the tape's memory goes with it.
   */
  async backward(cotangents: { hidden?: Array<Float32Array | null | undefined> } = {}, options: BackwardOptions = {}): Promise<BackwardResult> {
    if (cotangents === null || typeof cotangents !== 'object') throw new InvalidArgumentError('cotangents must be an object');
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
    checkOptions(cotangents, 'cotangents', ['hidden']);
    checkOptions(options, 'backward options', ['segments', 'initialState', 'signal']);
    const which = options.segments ?? 'embeds';
    if (which !== 'embeds' && which !== 'all') throw new InvalidArgumentError("backward: segments must be 'embeds' or 'all'");
    const H = this.host.hiddenSize;
    const dHidden = cotangents.hidden;
    if (dHidden !== undefined) {
      if (!Array.isArray(dHidden) || dHidden.length !== this.layout.length) throw new InvalidArgumentError(`cotangents.hidden must hold one entry per example (${this.layout.length})`);
      dHidden.forEach((c, i) => {
        if (c === null || c === undefined) return;
        const rows = this.layout[i]!.ids.length;
        if (!(c instanceof Float32Array) || c.length !== rows * H) throw new InvalidArgumentError(`cotangents.hidden[${i}] must be a Float32Array of ${rows} × ${H} values`);
        for (let k = 0; k < c.length; k++) if (!Number.isFinite(c[k]!)) throw new InvalidArgumentError(`cotangents.hidden[${i}][${k}] is not finite`);
      });
    }
    const handle = this.handle;
    if (!handle) throw new JambaError('invalid_argument', 'this tape has run backward already (or was disposed): a tape runs backward once');
    this.handle = null;
    const abort = abortFlag(options.signal);
    try {
      const res = await this.host.job(() => handle.backward({
        dHidden: dHidden?.map((c) => c ?? undefined), initialState: options.initialState ?? false, abort: abort.flag,
      }));
      if (options.signal?.aborted) throw new AbortError();
      const segments = this.layout.map((p, i) => p.segmentRows.map(([from, to, kind]) =>
        (kind === 'embeds' || which === 'all' ? res.rows[i]!.slice(from * H, to * H) : null)));
      const out: BackwardResult = { segments };
      if (options.initialState) out.initialState = res.initial!;
      return out;
    } catch (e) {
      throw options.signal?.aborted ? new AbortError() : fromNative(e);
    } finally {
      abort.done();
    }
  }

  /** Frees the tape without running backward. */
  dispose(): void {
    this.handle?.dispose();
    this.handle = null;
  }
}

export async function forwardForGrad(host: GradHost, examples: GradExample[], options: ForwardForGradOptions = {}): Promise<GradTape> {
  if (!Array.isArray(examples) || examples.length === 0) throw new InvalidArgumentError('examples must be a non-empty array');
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
  checkOptions(options, 'forwardForGrad options', ['reduction', 'stopAtLayer', 'outputs', 'checkpointing', 'signal']);
  const checkpointing = options.checkpointing ?? 'layer';
  if (checkpointing !== 'layer' && checkpointing !== 'none') throw new InvalidArgumentError("checkpointing must be 'layer' or 'none'");
  const reduction = options.reduction ?? 'mean';
  if (reduction !== 'mean' && reduction !== 'sum') throw new InvalidArgumentError("reduction must be 'mean' or 'sum'");
  const stop = options.stopAtLayer;
  if (stop !== undefined && (!Number.isInteger(stop) || stop < 0 || stop > host.numLayers))
    throw new InvalidArgumentError(`stopAtLayer must be an integer in [0, ${host.numLayers}]`);
  const outputs = options.outputs ?? [];
  if (!Array.isArray(outputs) || outputs.some((o) => o !== 'hidden' && o !== 'logits' && o !== 'routing')) throw new InvalidArgumentError("outputs may list 'hidden', 'logits' and 'routing'");
  const layout = examples.map((ex, i) => prepare(host, ex, i));
  if (stop !== undefined && layout.some((p) => p.targetRows.length > 0)) throw new InvalidArgumentError('an early exit (stopAtLayer) has no loss: give no targets, and a cotangent on hidden');
  if (reduction === 'mean') {
    const total = layout.reduce((s, p) => s + p.targetWeights.reduce((a, b) => a + b, 0), 0);
    if (total > 0) for (const p of layout) p.targetWeights = p.targetWeights.map((w) => w / total);
  }
  // Initial states go in as sequences restored from the snapshots (the pass copies them at once).
  const seqs: Array<Sequence | undefined> = layout.map((p, i) => {
    if (!p.initial) return undefined;
    const s = host.createSequence();
    try {
      s.restore(p.initial);
    } catch (e) {
      s.dispose();
      throw new InvalidArgumentError(`examples[${i}].initialState: ${(e as Error).message}`);
    }
    return s;
  });
  const abort = abortFlag(options.signal);
  try {
    const res = await host.job(() => host.native().forwardForGrad(layout.map((p, i) => ({
      ids: p.ids, embeds: p.embeds, targetRows: p.targetRows, targetIds: p.targetIds, targetWeights: p.targetWeights,
      initial: seqs[i]?.native() as NativeSequence | undefined,
    })), { stopAtLayer: stop, hidden: outputs.includes('hidden'), logits: outputs.includes('logits'), routing: outputs.includes('routing'),
      keepActivations: checkpointing === 'none', abort: abort.flag }));
    if (options.signal?.aborted) {
      res.tape.dispose();
      throw new AbortError();
    }
    return new GradTape(host, res.tape, layout, res.loss, res.exampleLoss, res.hidden, res.logits, res.routing);
  } catch (e) {
    throw options.signal?.aborted ? new AbortError() : fromNative(e);
  } finally {
    abort.done();
    for (const s of seqs) s?.dispose();
  }
}

/** The loss and the gradient of every vector segment: forwardForGrad, then backward. */
export async function valueAndGrad(host: GradHost, examples: GradExample[], options: Omit<ForwardForGradOptions, 'outputs' | 'stopAtLayer'> = {}):
    Promise<{ loss: number; grads: Array<Array<Float32Array | null>> }> {
  if (options !== null && typeof options === 'object') checkOptions(options, 'valueAndGrad options', ['reduction', 'checkpointing', 'signal']);
  const tape = await forwardForGrad(host, examples, options);
  const { segments } = await tape.backward({}, { signal: options.signal });
  return { loss: tape.loss, grads: segments };
}
