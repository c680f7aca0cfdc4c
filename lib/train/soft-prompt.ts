/**
 * Prompt tuning (Lester et al. 2021, and the baseline of AI21's frozen-LM paper): n trainable
 * vectors in front of the text, trained through the frozen model. Saved and loaded in Hugging
 * Face PEFT's prompt-tuning format (adapter_config.json + adapter_model.safetensors holding
 * `prompt_embeddings`), so a prompt trained with PEFT in Python loads here and the reverse.
 *
 * Placement: PEFT puts the virtual tokens before everything, BOS included ([P][BOS] text). The
 * default here is [BOS][P] text, which keeps BOS where pretraining put it and scores exactly the
 * text's tokens (design notes §1.3); the adapter records its placement in the safetensors
 * metadata, and an adapter without it (PEFT's own) loads with PEFT's placement.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CheckpointError, InvalidArgumentError } from '../errors';
import type { GradExample } from '../grad';
import type { JambaModel } from '../model';
import { Param, normal, seeded } from '../nn/layers';
import type { Optimizer } from '../nn/optim';
import { readFloatTensors, writeFloatTensors } from '../safetensors-io';

export type PromptInit = 'random' | 'sampled-vocab' | { text: string } | { ids: ArrayLike<number> };
export type PromptPosition = 'after-bos' | 'first';

export interface SoftPromptOptions {
  numVirtualTokens: number;
  /**
   * 'sampled-vocab' (default): embedding rows of random tokens; { text }: the rows of the text's
   * tokens as PEFT takes them (with the tokenizer's special tokens, repeated or cut to length);
   * { ids }: the rows of these tokens; 'random': normal values at the embedding table's scale.
   */
  init?: PromptInit;
  position?: PromptPosition;
  seed?: number;
}

/** An example to train on: the text (all of its tokens are targets), or an input and the target that follows it. */
export interface TrainItem {
  input: string | ArrayLike<number>;
  target?: string | ArrayLike<number>;
}

const POSITION_KEY = 'jamba_node.position';

/** The token ids of a text (no special tokens) or ids as given. */
export async function itemIds(model: JambaModel, x: string | ArrayLike<number>, what: string): Promise<number[]> {
  if (typeof x === 'string') return model.tokenizer.encode(x, { addSpecialTokens: false });
  const ids = Array.from(x ?? []);
  ids.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id >= model.config.vocabSize) throw new InvalidArgumentError(`${what}[${i}] = ${String(id)} is not a token id`);
  });
  return ids;
}

/**
 * The training example for `item` with vector rows `embeds` placed as `position` says: targets on
 * the target's tokens (or on every token of the input when there is no target), never on BOS.
 */
export async function promptExample(model: JambaModel, embeds: Float32Array, position: PromptPosition, item: TrainItem, where: string): Promise<GradExample> {
  if (item === null || typeof item !== 'object') throw new InvalidArgumentError(`${where} must be { input, target? }`);
  const input = await itemIds(model, item.input, `${where}.input`);
  const target = item.target === undefined ? undefined : await itemIds(model, item.target, `${where}.target`);
  const text = [...input, ...(target ?? [])];
  if (text.length === 0) throw new InvalidArgumentError(`${where} has no tokens`);
  const bos = model.tokenizer.bosTokenId ?? 1, n = embeds.length / model.config.hiddenSize;
  // Rows: [BOS][P] text or [P][BOS] text (or [BOS] text without a prompt); the text starts at row n + 1.
  const segments = n === 0 ? [{ ids: [bos, ...text] }] : position === 'first' ? [{ embeds }, { ids: [bos, ...text] }] : [{ ids: [bos] }, { embeds }, { ids: text }];
  const first = target === undefined ? 0 : input.length;  // the first text token that is a target
  const rows: number[] = [], ids: number[] = [];
  for (let j = first; j < text.length; j++) {
    rows.push(n + j);  // the row before text token j
    ids.push(text[j]!);
  }
  return { segments, targets: { rows, ids } };
}

export class SoftPrompt {
  private constructor(
    private readonly model: JambaModel,
    /** The trainable rows, numVirtualTokens × hiddenSize (float64 master copy). */
    readonly param: Param,
    readonly position: PromptPosition,
    private readonly initRecord: { kind: 'RANDOM' | 'SAMPLE_VOCAB' | 'TEXT'; text: string | null },
  ) {}

  static async create(model: JambaModel, o: SoftPromptOptions): Promise<SoftPrompt> {
    if (o === null || typeof o !== 'object') throw new InvalidArgumentError('SoftPrompt options must be an object');
    const n = o.numVirtualTokens, H = model.config.hiddenSize, V = model.config.vocabSize;
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('numVirtualTokens must be a positive integer');
    const position = o.position ?? 'after-bos';
    if (position !== 'after-bos' && position !== 'first') throw new InvalidArgumentError("position must be 'after-bos' or 'first'");
    const rand = seeded(o.seed ?? 1);
    const init = o.init ?? 'sampled-vocab';
    let value: Float64Array;
    let record: SoftPrompt['initRecord'];
    if (init === 'random') {
      // At the embedding table's own scale, so Adam's steps (about lr each) mean the same as for rows of it.
      const sample = await model.embeddings(Array.from({ length: 64 }, (_, i) => Math.floor((i * V) / 64)));
      const rms = Math.sqrt(sample.reduce((s, v) => s + v * v, 0) / sample.length);
      value = Float64Array.from({ length: n * H }, () => normal(rand) * rms);
      record = { kind: 'RANDOM', text: null };
    } else {
      let ids: number[];
      if (init === 'sampled-vocab') {
        ids = Array.from({ length: n }, () => Math.floor(rand() * V));
        record = { kind: 'SAMPLE_VOCAB', text: null };
      } else if (typeof init === 'object' && init !== null && 'text' in init && typeof init.text === 'string') {
        // PEFT's TEXT init: the tokenizer's ids with special tokens, repeated or cut to length.
        const t = await model.tokenizer.encode(init.text, { addSpecialTokens: true });
        if (t.length === 0) throw new InvalidArgumentError('init.text has no tokens');
        ids = Array.from({ length: n }, (_, i) => t[i % t.length]!);
        record = { kind: 'TEXT', text: init.text };
      } else if (typeof init === 'object' && init !== null && 'ids' in init) {
        const t = await itemIds(model, init.ids, 'init.ids');
        if (t.length === 0) throw new InvalidArgumentError('init.ids is empty');
        ids = Array.from({ length: n }, (_, i) => t[i % t.length]!);
        record = { kind: 'TEXT', text: model.tokenizer.decode(t) };
      } else {
        throw new InvalidArgumentError("init must be 'random', 'sampled-vocab', { text } or { ids }");
      }
      value = Float64Array.from(await model.embeddings(ids));
    }
    const param: Param = { name: 'prompt_embeddings', shape: [n, H], value, grad: new Float64Array(n * H) };
    return new SoftPrompt(model, param, position, record);
  }

  get numVirtualTokens(): number {
    return this.param.shape[0]!;
  }

  /** The prompt's rows as float32 (n × hiddenSize). */
  embeds(): Float32Array {
    return Float32Array.from(this.param.value);
  }

  /**
   * What to pass as `inputsEmbeds` to generate, complete or score: [E(BOS); P] for 'after-bos'
   * (give the text without BOS: `context` or ids), P for 'first' (text with BOS, as PEFT).
   */
  async inputsEmbeds(): Promise<Float32Array> {
    if (this.position === 'first') return this.embeds();
    const bos = await this.model.embeddings([this.model.tokenizer.bosTokenId ?? 1]);
    const out = new Float32Array(bos.length + this.param.value.length);
    out.set(bos);
    out.set(this.param.value, bos.length);
    return out;
  }

  private examples(items: TrainItem[]): Promise<GradExample[]> {
    if (!Array.isArray(items) || items.length === 0) throw new InvalidArgumentError('items must be a non-empty array');
    const embeds = this.embeds();
    return Promise.all(items.map((it, i) => promptExample(this.model, embeds, this.position, it, `items[${i}]`)));
  }

  /** One optimizer step on the mean loss over every target token of `items`. */
  async step(items: TrainItem[], optimizer: Optimizer, o: { signal?: AbortSignal } = {}): Promise<{ loss: number; tokens: number }> {
    const examples = await this.examples(items);
    const { loss, grads } = await this.model.valueAndGrad(examples, { signal: o.signal });
    optimizer.zeroGrad();
    const segment = this.position === 'first' ? 0 : 1;
    for (const g of grads) {
      const d = g[segment]!;
      for (let i = 0; i < d.length; i++) this.param.grad[i] = this.param.grad[i]! + d[i]!;
    }
    optimizer.step();
    return { loss, tokens: count(examples) };
  }

  /** The mean NLL per target token of `items` with this prompt (no gradient). */
  async evaluate(items: TrainItem[], o: { signal?: AbortSignal } = {}): Promise<{ loss: number; tokens: number }> {
    const examples = await this.examples(items);
    const tape = await this.model.forwardForGrad(examples, { signal: o.signal });
    tape.dispose();
    return { loss: tape.loss, tokens: count(examples) };
  }

  /** Writes a PEFT prompt-tuning adapter folder. */
  async save(dir: string, o: { baseModel?: string } = {}): Promise<void> {
    fs.mkdirSync(dir, { recursive: true });
    const cfg = this.model.config;
    const base = o.baseModel ?? path.basename(this.model.dir);
    const config = {
      auto_mapping: null, base_model_name_or_path: base, inference_mode: true, modules_to_save: null,
      num_attention_heads: cfg.numAttentionHeads, num_layers: cfg.numHiddenLayers, num_transformer_submodules: 1,
      num_virtual_tokens: this.numVirtualTokens, peft_type: 'PROMPT_TUNING', prompt_tuning_init: this.initRecord.kind,
      prompt_tuning_init_text: this.initRecord.text, revision: null, task_type: 'CAUSAL_LM', token_dim: cfg.hiddenSize,
      tokenizer_kwargs: null, tokenizer_name_or_path: this.initRecord.kind === 'TEXT' ? base : null,
    };
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), `${JSON.stringify(config, null, 2)}\n`);
    writeFloatTensors(path.join(dir, 'adapter_model.safetensors'), { prompt_embeddings: { shape: this.param.shape, data: this.embeds() } },
      { [POSITION_KEY]: this.position });
  }

  /** Loads a PEFT prompt-tuning (or P-tuning, whose saved prompt is materialised) adapter folder. */
  static async load(model: JambaModel, dir: string): Promise<SoftPrompt> {
    const cfgFile = path.join(dir, 'adapter_config.json'), stFile = path.join(dir, 'adapter_model.safetensors');
    if (!fs.existsSync(cfgFile)) throw new CheckpointError('no adapter_config.json (a PEFT adapter folder was expected)', { file: dir });
    let cfg: Record<string, unknown>;
    try {
      cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new CheckpointError(`not valid JSON: ${(e as Error).message}`, { file: cfgFile });
    }
    if (cfg.peft_type !== 'PROMPT_TUNING' && cfg.peft_type !== 'P_TUNING')
      throw new CheckpointError(`peft_type is ${JSON.stringify(cfg.peft_type)}; a PROMPT_TUNING or P_TUNING adapter was expected`, { file: cfgFile });
    if (cfg.num_transformer_submodules !== undefined && cfg.num_transformer_submodules !== null && cfg.num_transformer_submodules !== 1)
      throw new CheckpointError(`num_transformer_submodules is ${String(cfg.num_transformer_submodules)}; a decoder-only model takes 1`, { file: cfgFile });
    if (!fs.existsSync(stFile)) throw new CheckpointError('no adapter_model.safetensors beside adapter_config.json', { file: dir });
    const { tensors, metadata } = readFloatTensors(stFile);
    const t = tensors.get('prompt_embeddings');
    const H = model.config.hiddenSize;
    if (!t) throw new CheckpointError('holds no prompt_embeddings', { file: stFile });
    if (t.shape.length !== 2 || t.shape[1] !== H)
      throw new CheckpointError(`prompt_embeddings is ${JSON.stringify(t.shape)}; this model's rows have ${H} values`, { file: stFile, tensor: 'prompt_embeddings' });
    if (typeof cfg.num_virtual_tokens === 'number' && cfg.num_virtual_tokens !== t.shape[0])
      throw new CheckpointError(`num_virtual_tokens is ${cfg.num_virtual_tokens} but prompt_embeddings has ${t.shape[0]} rows`, { file: cfgFile });
    for (let i = 0; i < t.data.length; i++) if (!Number.isFinite(t.data[i]!)) throw new CheckpointError(`prompt_embeddings[${i}] is not finite`, { file: stFile });
    const position = metadata[POSITION_KEY] ?? 'first';  // PEFT's own placement when the adapter does not say
    if (position !== 'first' && position !== 'after-bos') throw new CheckpointError(`${POSITION_KEY} is '${position}'`, { file: stFile });
    const kind = cfg.prompt_tuning_init === 'TEXT' || cfg.prompt_tuning_init === 'SAMPLE_VOCAB' ? cfg.prompt_tuning_init : 'RANDOM';
    const param: Param = { name: 'prompt_embeddings', shape: [t.shape[0]!, H], value: Float64Array.from(t.data), grad: new Float64Array(t.data.length) };
    return new SoftPrompt(model, param, position, { kind, text: typeof cfg.prompt_tuning_init_text === 'string' ? cfg.prompt_tuning_init_text : null });
  }
}

/** The mean NLL per target token of `items` with no prompt at all ([BOS] text): the baseline a prompt must beat. */
export async function evaluateWithoutPrompt(model: JambaModel, items: TrainItem[], o: { signal?: AbortSignal } = {}): Promise<{ loss: number; tokens: number }> {
  if (!Array.isArray(items) || items.length === 0) throw new InvalidArgumentError('items must be a non-empty array');
  const examples = await Promise.all(items.map((it, i) => promptExample(model, new Float32Array(0), 'after-bos', it, `items[${i}]`)));
  const tape = await model.forwardForGrad(examples, { signal: o.signal });
  tape.dispose();
  return { loss: tape.loss, tokens: count(examples) };
}

/** Target tokens in a batch of examples. */
export function count(examples: GradExample[]): number {
  return examples.reduce((n, e) => n + (typeof e.targets === 'object' ? e.targets.rows.length : 0), 0);
}
