/**
 * JambaModel: a loaded checkpoint (config, tokenizer, weights on the CPU backend) and everything
 * done with it: logits, sequences, streaming and batched generation, inspection, disposal.
 */
import fs from 'node:fs';
import path from 'node:path';
import { JambaConfig, readConfig } from './config';
import { DisposedError, InvalidArgumentError, JambaError, fromNative } from './errors';
import { EngineContext, GenerateOptions, GenerationResult, PREFILL_CHUNK, generateSteps } from './generation';
import { buildPlan, parameterCounts } from './graph';
import { ForwardOptions, ForwardResult, NativeModel, NativeSequence, native } from './native';
import { defaultModelDir } from './paths';
import { TensorInfo, readCheckpointTensors } from './safetensors';
import { EvaluateOptions, Sequence, toTokenArray, withAbort } from './sequence';
import { JambaTokenizer } from './tokenizer';

export interface LoadOptions {
  /** Where to run: 'cpu' (default), or 'auto' (the CPU until a CUDA build is present). */
  device?: 'cpu' | 'auto' | 'cuda';
  /** Quantize every MoE expert to int8 with one scale per output row at load (ExpertsInt8). */
  expertsInt8?: boolean;
}

export interface LayerInfo {
  index: number;
  mixer: 'attention' | 'mamba';
  feedForward: 'dense' | 'moe';
  experts: number;
}

export interface ModelInfo {
  dir: string;
  config: JambaConfig;
  layers: LayerInfo[];
  parameters: { total: number; active: number };
  /** Bytes of weights by dtype as stored in the checkpoint files. */
  checkpointBytesByDtype: Record<string, number>;
  /** Bytes of weights by dtype as held in memory after loading (int8 experts, f32 vectors). */
  loadedBytesByDtype: Record<string, number>;
  expertsInt8: boolean;
  device: 'cpu';
  threads: number;
}

export interface PromptInput {
  /** Text (BOS added) or token ids (used as given). */
  prompt: string | ArrayLike<number>;
}

export class JambaModel {
  private handle: NativeModel | null;
  private readonly eosIds: number[];
  private inflight = 0;
  private idle: Array<() => void> = [];

  private constructor(
    readonly dir: string,
    readonly config: JambaConfig,
    readonly tokenizer: JambaTokenizer,
    handle: NativeModel,
    private readonly tensors: Map<string, TensorInfo>,
    readonly expertsInt8: boolean,
  ) {
    this.handle = handle;
    const gen = readGenerationEos(dir);
    this.eosIds = [...new Set([...config.eosTokenIds, ...gen, ...(tokenizer.eosTokenId !== null ? [tokenizer.eosTokenId] : [])])];
  }

  /** Loads a released Jamba checkpoint folder (config.json, safetensors, tokenizer.json). */
  static async load(dir: string = defaultModelDir(), options: LoadOptions = {}): Promise<JambaModel> {
    if (typeof dir !== 'string' || dir === '') throw new InvalidArgumentError('dir must be a path to a model folder');
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
    const device = options.device ?? 'cpu';
    if (device === 'cuda') throw new JambaError('unsupported_device', "device 'cuda' needs the CUDA build of jamba-node, which this installation does not have");
    if (device !== 'cpu' && device !== 'auto') throw new InvalidArgumentError(`device must be 'cpu', 'auto' or 'cuda', got ${String(device)}`);
    const abs = path.resolve(dir);
    if (!fs.existsSync(abs) || !fs.statSync(abs).isDirectory()) throw new InvalidArgumentError(`${abs} is not a folder`);
    const config = readConfig(abs);
    const tokenizer = JambaTokenizer.fromDir(abs);
    if (tokenizer.vocabSize > config.vocabSize)
      throw new InvalidArgumentError(`${abs}: tokenizer has ${tokenizer.vocabSize} tokens but config.json vocab_size is ${config.vocabSize}`);
    const tensors = readCheckpointTensors(abs);
    const expertsInt8 = options.expertsInt8 ?? false;
    const plan = buildPlan(config, tensors, { expertsInt8 });
    let handle: NativeModel;
    try {
      handle = await native().NativeModel.load(plan);
    } catch (e) {
      throw fromNative(e);
    }
    return new JambaModel(abs, config, tokenizer, handle, tensors, expertsInt8);
  }

  /** The ids that end generation: config.json, generation_config.json and the tokenizer's EOS. */
  get eosTokenIds(): readonly number[] {
    return this.eosIds;
  }

  /** A fresh sequence with its own state. Dispose it when done. */
  createSequence(): Sequence {
    return new Sequence((s, t, o) => this.forward(s, t, o), this.native().newSequence(), this.config.vocabSize);
  }

  /**
   * Evaluates tokens on several sequences in one forward pass (one row block per sequence) and
   * returns each sequence's logits as `Sequence.evaluate` would; the result for a sequence does
   * not depend on the others in the batch.
   */
  async evaluateBatch(sequences: Sequence[], ids: Array<ArrayLike<number>>, options: EvaluateOptions = {}): Promise<Float32Array[]> {
    if (!Array.isArray(sequences) || !Array.isArray(ids) || sequences.length !== ids.length || sequences.length === 0)
      throw new InvalidArgumentError('evaluateBatch: give one id array per sequence, at least one');
    const mode = options.logits ?? 'last';
    if (!['all', 'last', 'none'].includes(mode)) throw new InvalidArgumentError(`logits must be 'all', 'last' or 'none', got ${String(mode)}`);
    const tokens = ids.map((t, i) => toTokenArray(t, this.config.vocabSize, `ids[${i}]`));
    if (mode === 'last' && tokens.some((t) => t.length === 0)) throw new InvalidArgumentError("evaluateBatch: an empty id array has no last position");
    if (new Set(sequences).size !== sequences.length) throw new InvalidArgumentError('evaluateBatch: a sequence appears twice');
    const res = await withAbort(options.signal, (abort) => this.forward(sequences.map((s) => s.native()), tokens, { logits: mode, abort }));
    const V = this.config.vocabSize;
    const out: Float32Array[] = [];
    let row = 0;
    for (const t of tokens) {
      const n = mode === 'all' ? t.length : mode === 'last' ? 1 : 0;
      out.push(res.logits.slice(row * V, (row + n) * V));
      row += n;
    }
    return out;
  }

  /**
   * Logits at every position of `ids` (row-major, ids.length × vocab), from a fresh sequence;
   * evaluated in chunks so that `signal` can interrupt a long input.
   */
  async logits(ids: ArrayLike<number>, options: { signal?: AbortSignal } = {}): Promise<Float32Array> {
    const tokens = toTokenArray(ids, this.config.vocabSize, 'ids');
    if (tokens.length === 0) throw new InvalidArgumentError('ids is empty');
    const V = this.config.vocabSize;
    const out = new Float32Array(tokens.length * V);
    const seq = this.native().newSequence();
    try {
      for (let i = 0; i < tokens.length; i += PREFILL_CHUNK) {
        const chunk = tokens.subarray(i, i + PREFILL_CHUNK);
        const res = await withAbort(options.signal, (abort) => this.forward([seq], [chunk], { logits: 'all', abort }));
        out.set(res.logits, i * V);
      }
    } finally {
      seq.dispose();
    }
    return out;
  }

  /**
   * Intermediate activations of one forward pass (embedding, every layer's output, router logits
   * of MoE layers, final norm) and the logits; for parity tests and debugging.
   */
  async trace(ids: ArrayLike<number>): Promise<Record<string, Float32Array>> {
    const tokens = toTokenArray(ids, this.config.vocabSize, 'ids');
    if (tokens.length === 0) throw new InvalidArgumentError('ids is empty');
    const seq = this.native().newSequence();
    try {
      const res = await withAbort(undefined, () => this.forward([seq], [tokens], { logits: 'all', capture: true }));
      return { ...res.captured, logits: res.logits };
    } finally {
      seq.dispose();
    }
  }

  /** Streams the continuation of `prompt` as UTF-8-safe text pieces. */
  async *generate(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): AsyncGenerator<string, GenerationResult, void> {
    const ids = await this.promptIds(prompt, 'prompt');
    const steps = generateSteps(this.engine(), [ids], options);
    for (;;) {
      const r = await steps.next();
      if (r.done) return r.value[0]!;
      if (r.value[0]) yield r.value[0];
    }
  }

  /** Generates and returns the whole result. */
  async complete(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): Promise<GenerationResult> {
    return (await this.completeBatch([prompt], options))[0]!;
  }

  /** Generates for several prompts at once, batched per step; each result equals running it alone. */
  async completeBatch(prompts: Array<string | ArrayLike<number>>, options: GenerateOptions = {}): Promise<GenerationResult[]> {
    if (!Array.isArray(prompts) || prompts.length === 0) throw new InvalidArgumentError('prompts must be a non-empty array');
    const ids = await Promise.all(prompts.map((p, i) => this.promptIds(p, `prompts[${i}]`)));
    const steps = generateSteps(this.engine(), ids, options);
    for (;;) {
      const r = await steps.next();
      if (r.done) return r.value;
    }
  }

  /** The new token ids only (an ending EOS excluded). */
  async generateIds(promptIds: ArrayLike<number>, options: GenerateOptions = {}): Promise<number[]> {
    const ids = Array.from(toTokenArray(promptIds, this.config.vocabSize, 'promptIds'));
    return (await this.complete(ids, options)).tokens;
  }

  /** Config, layer schedule, parameter counts and memory by dtype. */
  inspect(): ModelInfo {
    const checkpoint: Record<string, number> = {};
    for (const t of this.tensors.values()) checkpoint[t.dtype.toLowerCase()] = (checkpoint[t.dtype.toLowerCase()] ?? 0) + t.nbytes;
    return {
      dir: this.dir,
      config: this.config,
      layers: this.config.layerTypes.map((mixer, index) => ({
        index, mixer, feedForward: this.config.layerNumExperts[index]! > 1 ? 'moe' : 'dense', experts: this.config.layerNumExperts[index]!,
      })),
      parameters: parameterCounts(this.config),
      checkpointBytesByDtype: checkpoint,
      loadedBytesByDtype: this.native().bytesByDtype(),
      expertsInt8: this.expertsInt8,
      device: 'cpu',
      threads: native().ops.threads(),
    };
  }

  /**
   * Frees the weights. A forward pass already running finishes first and the promise resolves
   * once the memory is released; every later call, including the next step of a generation in
   * progress, throws DisposedError.
   */
  async dispose(): Promise<void> {
    const h = this.handle;
    this.handle = null;
    while (this.inflight > 0) await new Promise<void>((r) => this.idle.push(r));
    h?.dispose();
  }

  get disposed(): boolean {
    return this.handle === null;
  }

  private native(): NativeModel {
    if (!this.handle) throw new DisposedError('the model');
    return this.handle;
  }

  /** Every native forward pass goes through here, so dispose() can wait for the one running. */
  private async forward(seqs: NativeSequence[], tokens: Int32Array[], options: ForwardOptions): Promise<ForwardResult> {
    const h = this.native();
    this.inflight++;
    try {
      return await h.forward(seqs, tokens, options);
    } finally {
      if (--this.inflight === 0) for (const r of this.idle.splice(0)) r();
    }
  }

  private engine(): EngineContext {
    this.native();
    return {
      forward: (s, t, o) => this.forward(s, t, o),
      newSequence: () => this.native().newSequence(),
      tokenizer: this.tokenizer,
      vocab: this.config.vocabSize,
      eosIds: this.eosIds,
    };
  }

  private async promptIds(prompt: string | ArrayLike<number>, name: string): Promise<number[]> {
    this.native();
    if (typeof prompt === 'string') return this.tokenizer.encode(prompt);
    return Array.from(toTokenArray(prompt, this.config.vocabSize, name));
  }
}

function readGenerationEos(dir: string): number[] {
  const file = path.join(dir, 'generation_config.json');
  if (!fs.existsSync(file)) return [];
  try {
    const g = JSON.parse(fs.readFileSync(file, 'utf8')) as { eos_token_id?: unknown };
    const e = g.eos_token_id;
    const list = Array.isArray(e) ? e : e === undefined || e === null ? [] : [e];
    return list.filter((v): v is number => Number.isInteger(v) && (v as number) >= 0);
  } catch {
    return [];
  }
}

/** Loads a Jamba checkpoint folder; without `dir`, the model shipped in the package. */
export function loadModel(dir?: string, options?: LoadOptions): Promise<JambaModel> {
  return JambaModel.load(dir, options);
}
