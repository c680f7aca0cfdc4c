/** The compiled addon and the types of what it exports (csrc/napi/). */
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
  /** One flag per sequence; the pass stops between layers once every flag is nonzero. */
  abort?: Array<Int32Array | undefined>;
}

export interface ForwardResult {
  logits: Float32Array;
  hidden?: Float32Array;
  captured?: Record<string, Float32Array>;
}

export interface NativeModel {
  newSequence(): NativeSequence;
  forward(sequences: NativeSequence[], tokens: Int32Array[], options: ForwardOptions): Promise<ForwardResult>;
  /** The input embedding rows of `ids`, exactly as forward() uses them. */
  embed(ids: Int32Array): Float32Array;
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
  threads(): number;
  parseSafetensorsHeader(bytes: Uint8Array): string[];
  gemmRate(x: Float32Array, m: number, w: Float32Array | Uint16Array, n: number, k: number, mode: 'f32' | 'bf16' | 'int8', seconds: number): number;
  fmaPeak(seconds: number): number;
  readBandwidth(seconds: number): number;
}

export interface NativeAddon {
  NativeModel: { load(plan: ModelPlanSpec, onProgress?: (bytesRead: number) => void): Promise<NativeModel> };
  ops: NativeOps;
  backend: string;
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
