/**
 * JambaModel: a loaded checkpoint (config, tokenizer, weights on the CPU backend) and everything
 * done with it: logits, sequences, streaming and batched generation, inspection, disposal.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JambaConfig, readConfig } from './config';
import { DisposedError, InvalidArgumentError, JambaError, NoDeviceError, UnsupportedDeviceError, fromNative } from './errors';
import { cudaUnsupported } from './cuda-support';
import { ChatMessage, ChatOptions, renderChat } from './chat';
import { ConstraintCompiler } from './constraints/grammar';
import { CHAT_KEYS, GENERATE_KEYS, checkKeys, keys } from './options';
import { ToolCallStream, toolConstraint } from './tools';
import { EngineContext, GenerateOptions, GenerationResult, ResolvedGenerate, feed, generateOne, resolveGenerateOptions, runToEnd } from './generation';
import { generateWithRetrieval } from './ralm/generate';
import { resolveRetrieval } from './ralm/options';
import { PassageStates } from './ralm/passages';
import { rerankPassages } from './ralm/rerank';
import type { RankedPassage } from './ralm/types';
import type { Passage } from './retrieval/types';
import { ScoreOptions, ScoreResult, scoreTokens } from './score';
import { buildPlan, parameterCounts } from './graph';
import { ForwardOptions, ForwardResult, NativeModel, NativeSequence, native } from './native';
import { defaultModelDir, packageRoot } from './paths';
import { PrefixCache } from './prefix-cache';
import { InsufficientMemoryError, availableMemoryBytes, estimateDeviceBytes, estimateLoadBytes } from './memory';
import { TensorInfo, assertInside, readCheckpointTensors } from './safetensors';
import { BatchScheduler, SchedulerStats } from './scheduler';
import { EvaluateOptions, RunResult, Sequence, SequenceHost, checkEmbeds, checkLogitsMode, toTokenArray } from './sequence';
import { Snapshot } from './snapshot';
import { JambaTokenizer } from './tokenizer';
import { modelFingerprint } from './fingerprint';
import { ForwardForGradOptions, GradExample, GradHost, GradTape, forwardForGrad, valueAndGrad } from './grad';

export interface LoadOptions {
  /**
   * Where to run: 'cpu' (default), 'cuda' (one NVIDIA GPU; needs the CUDA build), or 'auto' (CUDA
   * when a usable GPU and driver are present, else the CPU with one line on stderr saying why).
   */
  device?: 'cpu' | 'auto' | 'cuda';
  /** CUDA: sequences alive at once (default 16); each holds a slot of the preallocated state pools. */
  maxSequences?: number;
  /** CUDA: positions per sequence, the KV cache's length (default min(4096, max_position_embeddings)). */
  contextLength?: number;
  /** Quantize every MoE expert to int8 with one scale per output row at load (ExpertsInt8). */
  expertsInt8?: boolean;
  /** Bytes of prompt-prefix states kept for reuse (default 256 MiB; 0 turns the cache off). */
  prefixCacheBytes?: number;
  /** Bytes of retrieved-passage states kept for reuse by retrieval (default 128 MiB; 0: off). */
  passageCacheBytes?: number;
  /** Most tokens in one forward pass when concurrent calls are batched (default 4096). */
  maxPassTokens?: number;
  /**
   * Prompt tokens per forward pass of one sequence while prefilling (default 512 on the CPU,
   * 2048 on CUDA, where larger passes keep the GEMMs nearer their peak). Smaller chunks let an
   * abort, and other sequences' decode steps, in sooner.
   */
  prefillChunkTokens?: number;
  /** Called as weights are read: bytes read so far and in all. */
  onProgress?: (bytesRead: number, bytesTotal: number) => void;
  /**
   * Memory the model may take (default: what the machine has available now). Loading a model
   * estimated larger throws InsufficientMemoryError before allocating anything.
   */
  memoryLimitBytes?: number;
}

const INPUT_KEYS = keys<InputOptions>()(['inputsEmbeds', 'signal']);
const SCORE_KEYS = keys<ScoreOptions>()(['context', 'inputsEmbeds', 'signal']);
const LOAD_KEYS = keys<LoadOptions>()([
  'device', 'maxSequences', 'contextLength', 'expertsInt8', 'prefixCacheBytes', 'passageCacheBytes', 'maxPassTokens', 'prefillChunkTokens', 'onProgress', 'memoryLimitBytes',
]);

/** A soft prompt for the calls that take one. */
export interface InputOptions {
  /** n × hiddenSize floats fed before the tokens in place of token embeddings (a soft prompt). */
  inputsEmbeds?: Float32Array;
  signal?: AbortSignal;
}

export interface MultiPassOptions extends Omit<GenerateOptions, 'retrieval' | 'inputsEmbeds'> {
  /** Builds the next pass's prompt from this pass's prompt and candidates. */
  compose: (prompt: string, candidates: GenerationResult[], pass: number) => string | Promise<string>;
  /** Passes in all (default 2). */
  passes?: number;
  /** Candidates per pass, sampled with seeds seed, seed + 1, … (default 1). */
  samples?: number;
}

export interface MultiPassResult {
  /** The prompt of each pass. */
  prompts: string[];
  /** The candidates of each pass. */
  passes: GenerationResult[][];
}

export interface RerankCallOptions {
  /** Prefix tokens to predict (default 16). */
  tokens?: number;
  maxPassageTokens?: number;
  separator?: string;
  maxContextTokens?: number;
  signal?: AbortSignal;
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
  device: 'cpu' | 'cuda';
  threads: number;
}

export interface ModelStats {
  /** Forward passes run and token rows evaluated in them. */
  passes: number;
  rows: number;
  /** Forward-pass requests waiting for the next pass. */
  queued: number;
  prefixCache: { entries: number; bytes: number; hits: number; misses: number; tokensReused: number };
  /**
   * Sequences alive (each holds a state slot) and the slots there are: the CUDA state pool's
   * `maxSequences`; null on the CPU, where states are allocated as sequences are made.
   */
  sequences: { live: number; slots: number | null };
}

export class JambaModel {
  private handle: NativeModel | null;
  private closing = false;
  private disposing: Promise<void> | undefined;
  private readonly eosIds: number[];
  private readonly scheduler: BatchScheduler;
  private readonly prefixCache: PrefixCache | null;
  private liveSequences = 0;
  private readonly slots: number | null;
  /** Prompt tokens per prefill pass of one sequence (LoadOptions.prefillChunkTokens). */
  private readonly prefillChunk: number;
  private readonly unreleased = new FinalizationRegistry<undefined>(() => { this.liveSequences--; });
  /**
   * Where a chat reply ends unless `stop` says otherwise: generation_config.json's `stop_strings`
   * (the embedded model's blank line before the next speaker). Plain generation ignores them, so
   * a text prompt goes on as text.
   */
  readonly chatStops: readonly string[];
  /** The most positions a sequence may hold: `contextLength` (CUDA's default 4096), at most max_position_embeddings. */
  readonly contextLength: number;
  /** Grammars compiled for this model's vocabulary (xgrammar is loaded on first use). */
  private readonly constraints: ConstraintCompiler;
  /** States after [BOS; passage] for retrieval-augmented generation and scoring. @internal */
  readonly passageCache: PrefixCache | null;
  private fingerprintValue: string | undefined;
  private jobs = 0;  // native work outside the scheduler (trace, training passes)
  private jobsDone: Array<() => void> = [];

  private constructor(
    readonly dir: string,
    readonly config: JambaConfig,
    readonly tokenizer: JambaTokenizer,
    handle: NativeModel,
    private readonly tensors: Map<string, TensorInfo>,
    readonly expertsInt8: boolean,
    options: LoadOptions,
  ) {
    this.handle = handle;
    const gen = readGenerationConfig(dir);
    this.eosIds = [...new Set([...config.eosTokenIds, ...gen.eos, ...(tokenizer.eosTokenId !== null ? [tokenizer.eosTokenId] : [])])];
    this.chatStops = gen.stopStrings;
    const limit = config.maxPositionEmbeddings;
    this.contextLength = Math.min(options.contextLength ?? (handle.device() === 'cuda' ? 4096 : limit), limit);
    this.slots = handle.device() === 'cuda' ? options.maxSequences ?? 16 : null;
    this.prefillChunk = options.prefillChunkTokens ?? (handle.device() === 'cuda' ? 2048 : 512);
    this.scheduler = new BatchScheduler((s, t, o) => this.forward(s, t, o), config.vocabSize, config.hiddenSize, options.maxPassTokens ?? 4096);
    const cacheBytes = options.prefixCacheBytes ?? 256 * 2 ** 20;
    this.prefixCache = cacheBytes > 0 ? new PrefixCache(cacheBytes) : null;
    this.constraints = new ConstraintCompiler(tokenizer, config.vocabSize, this.eosIds);
    const passageBytes = options.passageCacheBytes ?? 128 * 2 ** 20;
    this.passageCache = passageBytes > 0 ? new PrefixCache(passageBytes) : null;
  }

  /** Loads a released Jamba checkpoint folder (config.json, safetensors, tokenizer.json). */
  static async load(dir: string = defaultModelDir(), options: LoadOptions = {}): Promise<JambaModel> {
    if (typeof dir !== 'string' || dir === '') throw new InvalidArgumentError('dir must be a path to a model folder');
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
    checkKeys(options, 'loadModel options', LOAD_KEYS);
    const asked = options.device ?? 'cpu';
    if (asked !== 'cpu' && asked !== 'auto' && asked !== 'cuda') throw new InvalidArgumentError(`device must be 'cpu', 'auto' or 'cuda', got ${String(asked)}`);
    for (const k of ['maxSequences', 'contextLength', 'prefillChunkTokens'] as const) {
      const v = options[k];
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new InvalidArgumentError(`${k} must be a positive integer`);
    }
    for (const k of ['prefixCacheBytes', 'passageCacheBytes', 'maxPassTokens'] as const) {
      const v = options[k];
      if (v !== undefined && (!Number.isSafeInteger(v) || v < (k === 'maxPassTokens' ? 1 : 0))) throw new InvalidArgumentError(`${k} must be a non-negative integer`);
    }
    const abs = path.resolve(dir);
    if (!fs.existsSync(abs) || !fs.statSync(abs).isDirectory()) throw new InvalidArgumentError(`${abs} is not a folder`);
    // Every file read must really be inside the folder (no symbolic link out of it).
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'chat_template.jinja'])
      if (fs.existsSync(path.join(abs, f))) assertInside(abs, path.join(abs, f));
    const config = readConfig(abs);
    let device: 'cpu' | 'cuda' = 'cpu';
    if (asked !== 'cpu') {
      // The model's shapes first (a CUDA build knows its kernels' limits without a device), then the device.
      const cuda = native().cuda;
      const why = (cuda ? cudaUnsupported(config, cuda.limits()) : null) ?? cudaUnavailable();
      if (why === null) device = 'cuda';
      else if (asked === 'cuda') throw why;
      else process.stderr.write(`jamba: device 'auto': ${why.message.replace(/^device 'cuda': /, '')}; using the CPU backend\n`);
    }
    const limit = options.memoryLimitBytes ?? availableMemoryBytes();
    if (options.memoryLimitBytes !== undefined && (!Number.isFinite(limit) || limit < 0)) throw new InvalidArgumentError('memoryLimitBytes must be a non-negative number');
    // A config whose weights alone (at 2 bytes each) cannot fit is refused before reading more.
    const implied = parameterCounts(config).total * 2;
    if (device === 'cpu' && implied > limit) throw new InsufficientMemoryError(implied, limit, `the model of ${path.join(abs, 'config.json')}`);
    const tokenizer = JambaTokenizer.fromDir(abs);
    if (tokenizer.vocabSize > config.vocabSize)
      throw new InvalidArgumentError(`${abs}: tokenizer has ${tokenizer.vocabSize} tokens but config.json vocab_size is ${config.vocabSize}`);
    const tensors = readCheckpointTensors(abs);
    const expertsInt8 = options.expertsInt8 ?? false;
    const plan = buildPlan(config, tensors, { expertsInt8 });
    if (device === 'cuda') {
      plan.device = 'cuda';
      plan.maxSequences = options.maxSequences ?? 16;
      plan.contextLength = Math.min(options.contextLength ?? 4096, config.maxPositionEmbeddings);
      const mamba = config.layerTypes.filter((t) => t === 'mamba').length;
      const needed = estimateDeviceBytes(tensors.values(), expertsInt8, {
        mambaLayers: mamba, attentionLayers: config.numHiddenLayers - mamba, dInner: config.mambaDInner, dConv: config.mambaDConv,
        dState: config.mambaDState, kvWidth: config.numKeyValueHeads * config.headDim, maxSequences: plan.maxSequences, contextLength: plan.contextLength,
      });
      const free = native().cuda!.info().freeBytes;
      if (needed > free) throw new InsufficientMemoryError(needed, free, `loading ${abs} onto the GPU (maxSequences ${plan.maxSequences}, contextLength ${plan.contextLength})`);
    } else {
      const needed = estimateLoadBytes(tensors.values(), expertsInt8);
      if (needed > limit) throw new InsufficientMemoryError(needed, limit, `loading ${abs}`);
    }
    let total = 0;
    for (const t of tensors.values()) total += t.nbytes;
    const onProgress = options.onProgress;
    let handle: NativeModel;
    try {
      handle = await native().NativeModel.load(plan, onProgress ? (done) => onProgress(done, total) : undefined);
    } catch (e) {
      throw fromNative(e);
    }
    return new JambaModel(abs, config, tokenizer, handle, tensors, expertsInt8, options);
  }

  /** The ids that end generation: config.json, generation_config.json and the tokenizer's EOS. */
  get eosTokenIds(): readonly number[] {
    return this.eosIds;
  }

  /** Identifies this model's config and weights; snapshots carry it. */
  get fingerprint(): string {
    this.fingerprintValue ??= modelFingerprint(this.config, this.tensors);
    return this.fingerprintValue;
  }

  /** A fresh sequence with its own state. Dispose it when done. */
  createSequence(): Sequence {
    const handle = this.native().newSequence();
    const host: SequenceHost = {
      vocab: this.config.vocabSize,
      hiddenSize: this.config.hiddenSize,
      prefillChunk: this.prefillChunk,
      step: (seq, input, mode, hidden, signal, sample) => {
        this.native();
        return this.scheduler.step(seq, input, mode, hidden, signal, sample);
      },
      fingerprint: () => this.fingerprint,
      released: () => {
        this.liveSequences--;
        this.unreleased.unregister(seq);
      },
    };
    const seq = new Sequence(host, handle);
    this.liveSequences++;
    // A sequence dropped without dispose() frees its state when collected; count it out then.
    this.unreleased.register(seq, undefined, seq);
    return seq;
  }

  /** Parses a buffer from `Snapshot.toBuffer()`; restore it with `sequence.restore()`. */
  snapshotFromBuffer(buf: Uint8Array): Snapshot {
    const s = Snapshot.fromBuffer(buf);
    if (s.fingerprint !== this.fingerprint) throw new InvalidArgumentError('the snapshot was taken on another model (its fingerprint differs)');
    return s;
  }

  /**
   * Evaluates tokens on several sequences at once (they share forward passes) and returns each
   * sequence's logits as `Sequence.evaluate` would.
   */
  async evaluateBatch(sequences: Sequence[], ids: Array<ArrayLike<number>>, options: EvaluateOptions = {}): Promise<Float32Array[]> {
    if (!Array.isArray(sequences) || !Array.isArray(ids) || sequences.length !== ids.length || sequences.length === 0)
      throw new InvalidArgumentError('evaluateBatch: give one id array per sequence, at least one');
    if (new Set(sequences).size !== sequences.length) throw new InvalidArgumentError('evaluateBatch: a sequence appears twice');
    checkLogitsMode(options.logits ?? 'last');
    return Promise.all(sequences.map((s, i) => s.evaluate(ids[i]!, options)));
  }

  /**
   * Logits at every position (row-major, rows × vocab) from a fresh sequence: one row per vector
   * of `inputsEmbeds` (a soft prompt, fed first) and per token of `ids`. Evaluated in chunks so
   * that `signal` can interrupt a long input.
   */
  async logits(ids: ArrayLike<number>, options: InputOptions = {}): Promise<Float32Array> {
    return (await this.runAll(ids, options, false)).logits;
  }

  /**
   * The final hidden states (after the last RMSNorm, before the LM head) at every position, rows ×
   * hiddenSize, laid out like `logits`: the features readers and rerankers consume.
   */
  async hiddenStates(ids: ArrayLike<number>, options: InputOptions = {}): Promise<Float32Array> {
    return (await this.runAll(ids, options, true)).hidden!;
  }

  /**
   * The input embedding rows of `ids` (ids.length × hiddenSize), exactly the vectors the model
   * feeds for those tokens: passed as `inputsEmbeds` they reproduce the tokens' logits bit for bit.
   */
  embeddings(ids: ArrayLike<number>): Float32Array {
    const tokens = toTokenArray(ids, this.config.vocabSize, 'ids');
    try {
      return this.native().embed(tokens);
    } catch (e) {
      throw fromNative(e);
    }
  }

  /**
   * Teacher-forced log-probabilities of each token of `input` given what precedes it: an optional
   * `context` (and soft prompt), then the input itself. Text gets a BOS unless a context is given.
   * Pass an array of inputs to score them together (they share forward passes).
   */
  score(input: string | ArrayLike<number>, options?: ScoreOptions): Promise<ScoreResult>;
  score(inputs: Array<string | ArrayLike<number>>, options?: ScoreOptions): Promise<ScoreResult[]>;
  async score(input: string | ArrayLike<number> | Array<string | ArrayLike<number>>, options: ScoreOptions = {}): Promise<ScoreResult | ScoreResult[]> {
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
    checkKeys(options, 'score options', SCORE_KEYS);
    this.native();
    const embeds = options.inputsEmbeds === undefined ? undefined : checkEmbeds(options.inputsEmbeds, this.config.hiddenSize, 'inputsEmbeds');
    const context = options.context === undefined ? [] : await this.promptIds(options.context, 'context', true);
    const hasContext = context.length > 0 || embeds !== undefined;
    const one = (x: string | ArrayLike<number>, name: string) =>
      typeof x === 'string' ? this.tokenizer.encode(x, { addSpecialTokens: !hasContext }) : Promise.resolve(Array.from(toTokenArray(x, this.config.vocabSize, name)));
    if (Array.isArray(input) && input.some((x) => typeof x !== 'number')) {
      if (input.length === 0) throw new InvalidArgumentError('score: inputs is empty');
      const all = await Promise.all((input as Array<string | ArrayLike<number>>).map((x, i) => one(x, `inputs[${i}]`)));
      return Promise.all(all.map((ids) => scoreTokens(this.createSequence(), context, ids, embeds, this.config.vocabSize, options.signal)));
    }
    const ids = await one(input as string | ArrayLike<number>, 'input');
    return scoreTokens(this.createSequence(), context, ids, embeds, this.config.vocabSize, options.signal);
  }

  /** A fresh sequence fed with `inputsEmbeds` then `ids`, returning every row (and hidden states). */
  private async runAll(ids: ArrayLike<number>, options: InputOptions, hidden: boolean): Promise<RunResult> {
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options must be an object');
    checkKeys(options, 'options', INPUT_KEYS);
    const tokens = toTokenArray(ids, this.config.vocabSize, 'ids');
    const embeds = options.inputsEmbeds === undefined ? new Float32Array(0) : checkEmbeds(options.inputsEmbeds, this.config.hiddenSize, 'inputsEmbeds');
    if (tokens.length === 0 && embeds.length === 0) throw new InvalidArgumentError('ids is empty');
    const seq = this.createSequence();
    try {
      return await feed(seq, embeds, tokens, 'all', hidden, options.signal);
    } finally {
      seq.dispose();
    }
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
      const res = await this.job(() => this.forward([seq], [tokens], { logits: 'all', capture: true }));
      return { ...res.captured, logits: res.logits };
    } catch (e) {
      throw fromNative(e);
    } finally {
      seq.dispose();
    }
  }

  /** Native work outside the batch scheduler: dispose() waits for it. */
  private async job<T>(run: () => Promise<T>): Promise<T> {
    this.native();
    this.jobs++;
    try {
      return await run();
    } finally {
      if (--this.jobs === 0) for (const r of this.jobsDone.splice(0)) r();
    }
  }

  /** What a gradient computation (lib/grad.ts) uses of the model. */
  private gradHost(): GradHost {
    return {
      hiddenSize: this.config.hiddenSize, vocabSize: this.config.vocabSize, numLayers: this.config.numHiddenLayers,
      native: () => this.native(), createSequence: () => this.createSequence(), job: (run) => this.job(run),
    };
  }

  /**
   * A training forward: the loss over the examples' targets (and their hidden states or logits
   * when asked), with a tape whose `backward` gives the gradient with respect to the examples'
   * vector segments and initial states. The weights are frozen. See docs/training.md.
   */
  forwardForGrad(examples: GradExample[], options: ForwardForGradOptions = {}): Promise<GradTape> {
    return forwardForGrad(this.gradHost(), examples, options);
  }

  /** The loss over the examples' targets and its gradient with respect to each vector segment (null for token segments). */
  valueAndGrad(examples: GradExample[], options: Omit<ForwardForGradOptions, 'outputs' | 'stopAtLayer'> = {}):
      Promise<{ loss: number; grads: Array<Array<Float32Array | null>> }> {
    return valueAndGrad(this.gradHost(), examples, options);
  }

  /**
   * Streams the continuation of `prompt` (text gets a BOS; ids are used as given) as UTF-8-safe
   * text pieces. With `inputsEmbeds`, a soft prompt goes before the prompt's tokens; with
   * `retrieval`, In-Context RALM puts retrieved passages in front (see docs/ralm.md).
   */
  async *generate(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): AsyncGenerator<string, GenerationResult, void> {
    const opts = this.resolve(options);
    const ids = await this.promptIds(prompt, 'prompt');
    return yield* this.run(ids, opts, options);
  }

  /** Plain or retrieval-augmented generation of the continuation of `ids`. */
  private run(ids: number[], opts: ResolvedGenerate, options: GenerateOptions): AsyncGenerator<string, GenerationResult, void> {
    if (options.retrieval !== undefined) {
      if (opts.embeds) throw new InvalidArgumentError('inputsEmbeds and retrieval cannot be combined: the passage goes first');
      return generateWithRetrieval(this, this.engine(), ids, opts, resolveRetrieval(options.retrieval, this), options.signal);
    }
    return generateOne(this.engine(), ids, opts, options.signal);
  }

  /**
   * Evaluates `prompt` (ids, used as given) once and keeps its state in the prefix cache, so that
   * the generations that follow from it skip the prefill: several choices of one prompt, say.
   * Does nothing when the prefix cache is off (`prefixCacheBytes: 0`). Resolves to the number of
   * prompt tokens whose state was already cached (under `promptCacheKey`'s namespace).
   */
  async prefill(prompt: ArrayLike<number>, options: { signal?: AbortSignal; promptCacheKey?: string } = {}): Promise<number> {
    checkKeys(options, 'options', ['signal', 'promptCacheKey']);
    const ids = Array.from(toTokenArray(prompt, this.config.vocabSize, 'prompt'));
    const key = options.promptCacheKey;
    if (key !== undefined && typeof key !== 'string') throw new InvalidArgumentError('promptCacheKey must be a string');
    if (!this.prefixCache || ids.length === 0) return 0;
    const hit = this.prefixCache.lookup(ids, key);
    const cached = hit?.tokens.length ?? 0;
    if (cached === ids.length) return cached;
    const seq = this.createSequence();
    try {
      if (hit) seq.restore(hit);
      await feed(seq, new Float32Array(0), Int32Array.from(ids.slice(cached)), 'last', false, options.signal);
      this.prefixCache.store(seq.snapshot(), key);
    } finally {
      seq.dispose();
    }
    return cached;
  }

  /** Generates and returns the whole result. */
  async complete(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): Promise<GenerationResult> {
    return runToEnd(this.generate(prompt, options));
  }

  /** Generates for several prompts at once (they share forward passes); each result equals running it alone. */
  async completeBatch(prompts: Array<string | ArrayLike<number>>, options: GenerateOptions = {}): Promise<GenerationResult[]> {
    if (!Array.isArray(prompts) || prompts.length === 0) throw new InvalidArgumentError('prompts must be a non-empty array');
    this.resolve(options);
    // Every prompt is tokenized before any starts, so the sequences start in step: their first
    // passes batch together, and so do their first retrievals.
    const ids = await Promise.all(prompts.map((p, i) => this.promptIds(p, `prompts[${i}]`)));
    return Promise.all(ids.map((p) => this.complete(p, options)));
  }

  /** The new token ids only (an ending EOS excluded). */
  async generateIds(promptIds: ArrayLike<number>, options: GenerateOptions = {}): Promise<number[]> {
    const ids = Array.from(toTokenArray(promptIds, this.config.vocabSize, 'promptIds'));
    return (await this.complete(ids, options)).tokens;
  }

  /**
   * Textual recursion (the frozen-LM paper's multi-pass generation): generates `samples`
   * candidates for `prompt`, builds the next prompt with `compose(prompt, candidates, pass)`, and
   * repeats for `passes` passes. Returns every pass's candidates; the answer is the last pass's.
   * Candidates of one pass share forward passes and the prompt's cached prefix state.
   */
  async multiPass(prompt: string, options: MultiPassOptions): Promise<MultiPassResult> {
    if (options === null || typeof options !== 'object' || typeof options.compose !== 'function')
      throw new InvalidArgumentError('multiPass needs options.compose(prompt, candidates, pass) → next prompt');
    if (typeof prompt !== 'string') throw new InvalidArgumentError('prompt must be a string');
    const passes = options.passes ?? 2, samples = options.samples ?? 1;
    if (!Number.isInteger(passes) || passes < 1) throw new InvalidArgumentError(`passes must be a positive integer, got ${String(options.passes)}`);
    if (!Number.isInteger(samples) || samples < 1) throw new InvalidArgumentError(`samples must be a positive integer, got ${String(options.samples)}`);
    const { compose, passes: _p, samples: _s, ...gen } = options;
    void _p; void _s;
    this.resolve(gen);
    const out: MultiPassResult = { prompts: [], passes: [] };
    let current = prompt;
    for (let pass = 0; pass < passes; pass++) {
      out.prompts.push(current);
      const seed = gen.seed ?? 0;
      const results = await Promise.all(Array.from({ length: samples }, (_, i) => this.complete(current, { ...gen, seed: seed + i })));
      out.passes.push(results);
      if (pass + 1 < passes) {
        current = await compose(current, results, pass);
        if (typeof current !== 'string') throw new InvalidArgumentError('compose() must return the next prompt as a string');
      }
    }
    return out;
  }

  /**
   * Zero-shot reranking of passages for a prefix (Ram et al., 2023): each passage is scored by the
   * log-probability this model gives the prefix's last `tokens` tokens after [passage; the rest of
   * the prefix]. Returns the passages with their scores, best first.
   */
  async rerank(passages: Passage[], prefix: string | ArrayLike<number>, options: RerankCallOptions = {}): Promise<RankedPassage[]> {
    if (!Array.isArray(passages) || passages.some((p) => !p || typeof p.id !== 'string' || typeof p.text !== 'string'))
      throw new InvalidArgumentError('passages must be an array of { id, text } passages');
    const ids = await this.promptIds(prefix, 'prefix', false);
    const r = resolveRetrieval({ retriever: { retrieve: async () => [] }, ...options, rerank: { tokens: options.tokens } }, this);
    const layout = { tokens: r.rerank!.tokens, maxPassageTokens: r.maxPassageTokens, separator: r.separator, maxContextTokens: r.maxContextTokens };
    return rerankPassages(this, new PassageStates(this, layout), passages, ids, layout, options.signal);
  }

  private resolve(options: GenerateOptions, ...extraKeys: Array<readonly string[]>): ResolvedGenerate {
    if (options !== null && typeof options === 'object') checkKeys(options, 'options', GENERATE_KEYS, ...extraKeys);
    const opts = resolveGenerateOptions(options, this.config.vocabSize);
    if (options.inputsEmbeds !== undefined) opts.embeds = checkEmbeds(options.inputsEmbeds, this.config.hiddenSize, 'inputsEmbeds');
    return opts;
  }

  /** Renders chat messages with the model's chat template (tokenizer_config.json). */
  renderChat(messages: ChatMessage[], options: ChatOptions = {}): string {
    return renderChat(this.dir, this.tokenizer, messages, options);
  }

  /** Streams the assistant's reply to `messages`, rendered with the model's chat template. */
  async *chat(messages: ChatMessage[], options: ChatOptions & GenerateOptions = {}): AsyncGenerator<string, GenerationResult, void> {
    const opts = this.resolve(options, CHAT_KEYS);  // options are checked before the template runs
    return yield* this.chatFrom(await this.chatPromptIds(messages, options), options, opts);
  }

  /**
   * The prompt `chat` evaluates for `messages`: rendered with the chat template (with the tools
   * that `toolChoice` leaves) and tokenized. The server renders once and runs `chatFrom` for each
   * of `n` choices.
   * @internal
   */
  async chatPromptIds(messages: ChatMessage[], options: ChatOptions = {}): Promise<number[]> {
    const text = this.renderChat(messages, { ...options, tools: options.toolChoice === 'none' ? undefined : options.tools });
    return this.tokenizer.encode(text, { addSpecialTokens: false });  // the template writes the BOS itself
  }

  /** `chat` from the ids `chatPromptIds` rendered (`opts`: the options resolved, if they already are). @internal */
  async *chatFrom(ids: number[], options: ChatOptions & GenerateOptions = {}, resolved?: ResolvedGenerate): AsyncGenerator<string, GenerationResult, void> {
    const opts = resolved ?? this.resolve(options, CHAT_KEYS);  // in the body: errors come from the first next(), as chat's
    if (options.stop === undefined && options.chatTemplate === undefined) opts.stops = [...this.chatStops];
    const tools = options.toolChoice === 'none' ? undefined : options.tools;
    const forced = toolConstraint(tools, options.toolChoice, options.parallelToolCalls ?? true);
    if (options.onToolCall !== undefined && typeof options.onToolCall !== 'function') throw new InvalidArgumentError('onToolCall must be a function');
    if (forced) {
      if (opts.constraint) throw new InvalidArgumentError('toolChoice forces a tool call: it cannot be combined with responseFormat or grammar');
      opts.constraint = forced;
    }
    const gen = this.run(ids, opts, options);
    if (!tools?.length) return yield* gen;
    // The reply's text streams without the call block; each call is reported as it closes.
    const calls = new ToolCallStream(`call-${crypto.randomUUID()}`);
    let text = '';
    for (;;) {
      const r = await gen.next();
      if (r.done) {
        const result = r.value;
        const rest = calls.end(result.finishReason === 'length');
        if (rest) yield rest;
        result.text = text + rest;
        if (calls.calls.length) result.toolCalls = calls.calls;
        // A closed block ends the reply with its calls; an unclosed one cut by maxTokens is 'length'.
        if (calls.calls.length && (calls.closed || result.finishReason !== 'length')) result.finishReason = 'tool_calls';
        return result;
      }
      const out = calls.push(r.value);
      text += out.text;
      if (out.text) yield out.text;
      for (const c of out.calls) options.onToolCall?.(c);  // after the text that came before it
    }
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
      device: this.native().device(),
      threads: native().ops.threads(),
    };
  }

  /** Passes run, rows evaluated, queue depth and prefix-cache use, for monitoring. */
  get stats(): ModelStats {
    const s: SchedulerStats = this.scheduler.stats;
    const c = this.prefixCache;
    return {
      ...s,
      prefixCache: { entries: c?.size ?? 0, bytes: c?.bytes ?? 0, hits: c?.hits ?? 0, misses: c?.misses ?? 0, tokensReused: c?.tokensReused ?? 0 },
      sequences: { live: this.liveSequences, slots: this.slots },
    };
  }

  /** Forgets every cached prompt prefix. */
  clearPrefixCache(): void {
    this.prefixCache?.clear();
  }

  /**
   * Frees the weights. Forward passes already requested (running or queued) finish first and the
   * promise resolves once the memory is released; every later call, including the next step of a
   * generation in progress, throws DisposedError.
   */
  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      this.closing = true;
      await this.scheduler.drain();
      while (this.jobs > 0) await new Promise<void>((r) => this.jobsDone.push(r));
      this.prefixCache?.clear();
      this.handle?.dispose();
      this.handle = null;
    })();
    return this.disposing;
  }

  get disposed(): boolean {
    return this.closing;
  }

  private native(): NativeModel {
    if (this.closing || !this.handle) throw new DisposedError('the model');
    return this.handle;
  }

  /** The scheduler's pass runner: requests accepted before dispose() still run. */
  private forward(seqs: NativeSequence[], tokens: Int32Array[], options: ForwardOptions): Promise<ForwardResult> {
    if (!this.handle) return Promise.reject(new DisposedError('the model'));
    return this.handle.forward(seqs, tokens, options);
  }

  private engine(): EngineContext {
    this.native();
    return {
      newSequence: () => this.createSequence(),
      hiddenSize: this.config.hiddenSize,
      deviceSampling: this.native().device() === 'cuda',
      maskDuringPass: this.native().device() === 'cuda' || native().ops.threads() < os.availableParallelism(),
      tokenizer: this.tokenizer,
      vocab: this.config.vocabSize,
      eosIds: this.eosIds,
      prefixCache: this.prefixCache,
      constraints: this.constraints,
    };
  }

  private async promptIds(prompt: string | ArrayLike<number>, name: string, addSpecialTokens = true): Promise<number[]> {
    this.native();
    if (typeof prompt === 'string') return this.tokenizer.encode(prompt, { addSpecialTokens });
    return Array.from(toTokenArray(prompt, this.config.vocabSize, name));
  }
}

/** Why the model cannot run on CUDA here, or null when it can. */
/**
 * Why `device: 'cuda'` cannot be served, as the error it throws: `unsupported_device` for a build
 * without the CUDA backend (with the reason the install recorded), `no_device` for a CUDA build on
 * a machine with no usable GPU; null when it can.
 */
function cudaUnavailable(): JambaError | null {
  const cuda = native().cuda;
  if (!cuda) return new UnsupportedDeviceError(`device 'cuda': this build of jamba-node has no CUDA backend: ${whyNoCudaBuild()}`);
  try {
    cuda.info();
  } catch (e) {
    const err = fromNative(e);
    return err instanceof JambaError && err.code === 'no_device' ? new NoDeviceError(`device 'cuda': no usable CUDA device (${err.message})`) : err as JambaError;
  }
  return null;
}

/** The reason scripts/install.js recorded in build/jamba-build.json, with what to do about it. */
function whyNoCudaBuild(): string {
  if (process.env.JAMBA_ADDON) return `the addon JAMBA_ADDON names (${process.env.JAMBA_ADDON}) was built without it`;
  let reason = 'it was built without one';
  try {
    const r = (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'build', 'jamba-build.json'), 'utf8')) as { reason?: unknown }).reason;
    if (typeof r === 'string') reason = r;
  } catch {
    // no record: an addon built some other way
  }
  return `${reason}. Install where a CUDA toolkit (nvcc) is found to build it (\`npm rebuild jamba-node\`; JAMBA_CUDA=ON makes a failed CUDA build an error)`;
}

/** generation_config.json's end-of-sequence ids and stop strings (transformers' names); absent or unreadable, none. */
function readGenerationConfig(dir: string): { eos: number[]; stopStrings: string[] } {
  const file = path.join(dir, 'generation_config.json');
  if (!fs.existsSync(file)) return { eos: [], stopStrings: [] };
  try {
    const g = JSON.parse(fs.readFileSync(file, 'utf8')) as { eos_token_id?: unknown; stop_strings?: unknown };
    const e = g.eos_token_id, st = g.stop_strings;
    const list = Array.isArray(e) ? e : e === undefined || e === null ? [] : [e];
    const stops = Array.isArray(st) ? st : typeof st === 'string' ? [st] : [];
    return { eos: list.filter((v): v is number => Number.isInteger(v) && (v as number) >= 0), stopStrings: stops.filter((v): v is string => typeof v === 'string' && v !== '') };
  } catch {
    return { eos: [], stopStrings: [] };
  }
}

/** Loads a Jamba checkpoint folder; without `dir`, the model shipped in the package. */
export function loadModel(dir?: string, options?: LoadOptions): Promise<JambaModel> {
  return JambaModel.load(dir, options);
}
