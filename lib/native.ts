/** The compiled addon and the types of what it exports (csrc/napi/). */
import type { NativeRetrieval } from './retrieval/native-index';
import nodeGypBuild from 'node-gyp-build';
import { packageRoot } from './paths';

export interface TensorSourceSpec {
  name: string;
  file: string;
  offset: number;
  nbytes: number;
  dtype: 'F32' | 'BF16' | 'F16';
  shape: number[];
}

export interface MlpSpec { gate: TensorSourceSpec; up: TensorSourceSpec; down: TensorSourceSpec }

export interface LayerSpec {
  mixer: 'attention' | 'mamba';
  feedForward: 'dense' | 'moe';
  inputNorm: TensorSourceSpec;
  ffNorm: TensorSourceSpec;
  attention?: { q: TensorSourceSpec; k: TensorSourceSpec; v: TensorSourceSpec; o: TensorSourceSpec };
  mamba?: {
    inProj: TensorSourceSpec; inProjBias?: TensorSourceSpec; convWeight: TensorSourceSpec; convBias?: TensorSourceSpec;
    xProj: TensorSourceSpec; dtProj: TensorSourceSpec; dtProjBias: TensorSourceSpec; aLog: TensorSourceSpec;
    d: TensorSourceSpec; outProj: TensorSourceSpec; outProjBias?: TensorSourceSpec; dtNorm: TensorSourceSpec;
    bNorm: TensorSourceSpec; cNorm: TensorSourceSpec;
  };
  mlp?: MlpSpec;
  router?: TensorSourceSpec;
  experts?: MlpSpec[];
}

export interface ModelPlanSpec {
  dims: {
    vocab: number; hidden: number; intermediate: number; layers: number; heads: number; kvHeads: number;
    headDim: number; dInner: number; dState: number; dConv: number; dtRank: number; experts: number; topK: number;
    eps: number;
  };
  embed: TensorSourceSpec;
  finalNorm: TensorSourceSpec;
  lmHead?: TensorSourceSpec;
  layers: LayerSpec[];
  expertsInt8: boolean;
  /** Where the executor runs (default 'cpu'). */
  device?: 'cpu' | 'cuda';
  /** CUDA: sequences alive at once, and positions per sequence (the state pools' sizes). */
  maxSequences?: number;
  contextLength?: number;
  /** CUDA benchmarks: random weights made on the device instead of read from files. */
  synthetic?: boolean;
}

/** A sequence's whole state, copied out: per layer the conv and SSM state (Mamba) or keys and values. */
export interface ExportedState {
  position: number;
  layers: Array<{ conv: Float32Array; ssm: Float32Array; k: Float32Array; v: Float32Array }>;
}

export interface NativeSequence {
  position(): number;
  bytes(): number;
  reset(): void;
  dispose(): void;
  exportState(): ExportedState;
  importState(state: ExportedState): void;
}

/** Which positions' logits a forward pass returns. */
export type LogitsMode = 'all' | 'last' | 'none';

export interface ForwardOptions {
  logits: LogitsMode;
  capture?: boolean;
  /** Also return the final-norm hidden states of the rows whose logits are returned. */
  hidden?: boolean;
  /** Per sequence: rows of hidden-size floats fed before its tokens in place of token embeddings. */
  embeds?: Array<Float32Array | undefined>;
  /** CUDA: per sequence, draw its next token on the device (logits 'last'); see SampleSpec. */
  sample?: Array<SampleSpec | undefined>;
  /** CUDA: time each op family of this pass with events (`ForwardResult.profile`); the pass runs without its graph. */
  profile?: boolean;
  /** One flag per sequence; the pass stops between layers once every flag is nonzero. */
  abort?: Array<Int32Array | undefined>;
}

/** A token drawn on the device from a sequence's last logits: seeded Philox, counted by `step`. */
export interface SampleSpec {
  temperature: number;
  topK: number;
  topP: number;
  /** Drop tokens less likely than minP × the most likely one (0 or absent: off). */
  minP?: number;
  seed: number;
  step: number;
  /** A grammar's allowed tokens: bit i of word i / 32 (xgrammar's bitmask); absent, all. */
  mask?: Int32Array;
}

export interface ForwardResult {
  /** Empty when every sequence of the pass was sampled on the device. */
  logits: Float32Array;
  /** With `sample`: per sequence, its drawn token (-1 where none was asked). */
  sampled?: Int32Array;
  hidden?: Float32Array;
  captured?: Record<string, Float32Array>;
  /** With `profile`: milliseconds per op family of the pass, in the order they first ran. */
  profile?: Array<{ op: string; ms: number }>;
}

/** One example of a training forward, as the native pass takes it. */
export interface NativeGradExample {
  /** Per row: a token id, or -1 for the next row of `embeds`. */
  ids: Int32Array;
  embeds: Float32Array;
  targetRows: Int32Array;
  targetIds: Int32Array;
  /** Each target's weight in the loss (divided by the batch's total for a mean). */
  targetWeights: Float32Array;
  /** A sequence whose state the example starts from (copied when the call is made). */
  initial?: NativeSequence | undefined;
}

export interface NativeGradTape {
  /** `profile`: ms per op family of the backward, where the backend times it (CUDA; the GPU bench reads it). */
  backward(options: { dHidden?: Array<Float32Array | undefined>; initialState?: boolean; profile?: boolean; abort?: Int32Array | undefined }):
    Promise<{ rows: Float32Array[]; initial?: Array<Array<{ conv: Float32Array; ssm: Float32Array; k: Float32Array; v: Float32Array }>>;
      profile?: Array<{ op: string; ms: number }> }>;
  dispose(): void;
}

export interface NativeModel {
  newSequence(): NativeSequence;
  forward(sequences: NativeSequence[], tokens: Int32Array[], options: ForwardOptions): Promise<ForwardResult>;
  /** A forward that keeps what its backward needs (csrc/model/grad_request.h). */
  forwardForGrad(examples: NativeGradExample[], options: { stopAtLayer?: number | undefined; hidden?: boolean; logits?: boolean; routing?: boolean;
    keepActivations?: boolean; abort?: Int32Array | undefined }):
    Promise<{ tape: NativeGradTape; loss: number; exampleLoss: Float64Array; hidden?: Float32Array[]; logits?: Float32Array[]; routing?: Array<Int32Array[] | null> }>;
  /** The input embedding rows of `ids`, exactly as forward() uses them. */
  embed(ids: Int32Array): Float32Array;
  /** 'cpu' or 'cuda'. */
  device(): 'cpu' | 'cuda';
  bytesByDtype(): Record<string, number>;
  dispose(): void;
}

export interface NativeOps {
  gemm(x: Float32Array, m: number, w: Float32Array | Uint16Array, n: number, k: number, mode: 'f32' | 'bf16' | 'int8', bias?: Float32Array): Float32Array;
  quantizeInt8(w: Float32Array, n: number, k: number): { q: Int8Array; scale: Float32Array };
  rmsnorm(x: Float32Array, rows: number, cols: number, weight: Float32Array, eps: number): Float32Array;
  conv1d(x: Float32Array, t: number, c: number, w: Float32Array, width: number, bias: Float32Array | null, state: Float32Array): Float32Array;
  selectiveScan(u: Float32Array, dt: Float32Array, b: Float32Array, c: Float32Array, z: Float32Array, a: Float32Array,
    d: Float32Array, dtBias: Float32Array, t: number, dInner: number, dState: number, state: Float32Array, stepBatch?: number): Float32Array;
  attention(q: Float32Array, k: Float32Array, v: Float32Array, t: number, past: number, heads: number, kvHeads: number, headDim: number): Float32Array;
  routerTopk(logits: Float32Array, t: number, e: number, k: number): { idx: Int32Array; weight: Float32Array };
  /** The CUDA sampler's Gumbel noise for each 32-bit draw, computed on the host. */
  gumbelNoise(bits: Uint32Array): Float32Array;
  /** The CUDA sampler's draw under top-k / top-p / min-p cuts (rejection, csrc/core/cut_sampling.h), on the host. */
  sampleWithCuts(logits: Float32Array, temperature: number, topK: number, topP: number, minP: number, seed: number, step: number): number;
  /** CUDA decode attention's key ranges for a sequence of `keys` keys: [begin, end] per split. */
  decodeSplitRanges(keys: number): Int32Array;
  threads(): number;
  parseSafetensorsHeader(bytes: Uint8Array): string[];
  gemmRate(x: Float32Array, m: number, w: Float32Array | Uint16Array, n: number, k: number, mode: 'f32' | 'bf16' | 'int8', seconds: number): number;
  fmaPeak(seconds: number): number;
  readBandwidth(seconds: number): number;
}

/** The shapes the CUDA kernels support. */
export interface CudaLimits { maxDState: number; minConv: number; maxConv: number; maxHeadDim: number; maxGroup: number; maxExperts: number }

type F32 = Float32Array;
type Timed<T> = T & { ms: number };
type DT = 'f32' | 'bf16';

/**
 * The CUDA kernels one by one (CUDA builds only), for the GPU tests and benchmark. Inputs are
 * host arrays (rounded to bf16 on the way in where `dtype` is 'bf16'); `repeat` > 1 also times
 * the kernel with CUDA events (`ms` per run). Outputs start as NaN on the device.
 */
export interface NativeCudaOps {
  info(): { name: string; computeCapability: string; multiprocessors: number; l2Bytes: number; totalBytes: number; freeBytes: number };
  /** The shapes the kernels support (csrc/cuda/kernels.h); needs no device. */
  limits(): CudaLimits;
  copyBandwidth(o: { bytes: number; repeat?: number }): number;
  rmsnormResidual(o: { h: F32; delta?: F32; rows: number; cols: number; weight: F32; eps: number; dtype?: DT; repeat?: number }): Timed<{ h: F32; out: F32 }>;
  conv1d(o: { x: F32; tLen: number; channels: number; w: F32; dConv: number; bias?: F32; state: F32; dtype?: DT; repeat?: number }): Timed<{ out: F32; state: F32 }>;
  conv1dUpdate(o: { x: F32; batch: number; channels: number; w: F32; dConv: number; bias?: F32; pool: F32; poolSlots: number; slots: Int32Array; dtype?: DT; repeat?: number }): Timed<{ out: F32; pool: F32 }>;
  selectiveScan(o: { u: F32; dt: F32; b: F32; c: F32; z: F32; a: F32; d: F32; dtBias: F32; state: F32; tLen: number; dInner: number; dState: number;
    dtype?: DT; repeat?: number }): Timed<{ y: F32; state: F32 }>;
  mambaDecodeStep(o: { p: F32; batch: number; dInner: number; dState: number; dtRank: number; dtNorm: F32; bNorm: F32; cNorm: F32; eps: number;
    dtProj: F32; dtBias: F32; a: F32; d: F32; u: F32; z: F32; pool: F32; poolSlots: number; slots: Int32Array; dtype?: DT; repeat?: number }): Timed<{ y: F32; pool: F32 }>;
  moeRoute(o: { logits: F32; tokens: number; experts: number; k: number; repeat?: number }):
    Timed<{ idx: Int32Array; weight: F32; counts: Int32Array; offsets: Int32Array; active: Int32Array; rowOf: Int32Array; tokenOfRow: Int32Array; rowWeight: F32 }>;
  moeBlock(o: { x: F32; tokens: number; hidden: number; logits: F32; experts: number; k: number; inner: number; wGateUp: F32; wDown: F32;
    int8?: boolean; h?: F32; skinny?: boolean; repeat?: number }): Timed<{ h: F32 }>;
  embed(o: { table: F32; vocab: number; hidden: number; ids: Int32Array; count: number; dtype?: DT; repeat?: number }): Timed<{ out: F32 }>;
  appendKv(o: { qkv: F32; rows: number; width: number; kCol: number; vCol: number; kvWidth: number; positions: number; slots: number;
    past: Int32Array; tokenOffsets: Int32Array; dtype?: DT; repeat?: number }): Timed<{ k: F32; v: F32 }>;
  groupedGemm(o: { a: F32; rows: number; k: number; w: F32; experts: number; n: number; int8?: boolean; offsets: Int32Array; rowScale?: F32; outDtype?: DT;
    skinny?: boolean; siluGate?: boolean; dx?: boolean; repeat?: number }): Timed<{ out: F32 }>;
  quantizeInt8(o: { w: F32; rows: number; k: number }): { q: Int32Array; scale: F32 };
  attention(o: { q: F32; tokens: number; k: F32; v: F32; positions: number; heads: number; kvHeads: number; headDim: number; past: Int32Array;
    decode?: boolean; dtype?: DT; repeat?: number }): Timed<{ out: F32 }>;
  sample(o: { logits: F32; rows: number; vocab: number; temperature?: number; topK?: number; topP?: number; seed?: number; step?: number;
    minP?: number; steps?: Int32Array; mask?: Int32Array; repeat?: number }): Int32Array & { ms: number };
}

export interface NativeAddon {
  NativeModel: { load(plan: ModelPlanSpec, onProgress?: (bytesRead: number) => void): Promise<NativeModel> };
  ops: NativeOps;
  /** 'cpu', or 'cpu+cuda' for a build with the CUDA backend. */
  backend: string;
  cuda?: NativeCudaOps;
  retrieval: NativeRetrieval;
}

let addon: NativeAddon | undefined;

/**
 * Loads the addon built by `npm install` (build/Release/jamba.node), once per process.
 * JAMBA_ADDON names another build to load instead (the sanitizer build of `npm run test:asan`).
 */
export function native(): NativeAddon {
  const override = process.env.JAMBA_ADDON;
  addon ??= (override ? require(override) : nodeGypBuild(packageRoot())) as NativeAddon;
  return addon;
}
