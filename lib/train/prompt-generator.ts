/**
 * Input-dependent prompt tuning (ID-PT, AI21's frozen-LM paper §2): a small network reads the
 * input and writes the prompt that goes in front of it. This one (the design notes' G1) reads the
 * frozen model's own residual stream after an early layer, pools it with n learned queries, and
 * turns the pooled rows into prompt rows with a SwiGLU MLP, added to a learned base prompt:
 *
 *   P(x) = P₀ + MLP(pool(norm(h_k(x))))
 *
 * The MLP's output projection starts at zero, so an untrained generator is exactly the soft
 * prompt P₀; training adds what the input tells. The model stays frozen throughout.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CheckpointError, InvalidArgumentError } from '../errors';
import type { JambaModel } from '../model';
import { Module, Param, Rows, attentionPool, rmsNorm, rows, sequential, swigluMlp } from '../nn/layers';
import type { Optimizer } from '../nn/optim';
import { readFloatTensors, writeFloatTensors } from '../safetensors-io';
import { PromptPosition, SoftPrompt, SoftPromptOptions, TrainItem, count, itemIds, promptExample } from './soft-prompt';

export interface PromptGeneratorOptions extends Omit<SoftPromptOptions, 'position'> {
  /** The layer whose output the generator reads (default: a quarter of the way in). */
  readLayer?: number;
  /** Heads of the attention pooling (default 4, or fewer to divide the hidden size). */
  heads?: number;
  /** Hidden units of the MLP (default twice the hidden size). */
  ffHidden?: number;
  position?: PromptPosition;
}

export class PromptGenerator {
  /** The input-dependent part: norm, pooling, MLP. */
  readonly network: Module;
  readonly readLayer: number;

  private constructor(private readonly model: JambaModel, private readonly base: SoftPrompt, network: Module, readLayer: number) {
    this.network = network;
    this.readLayer = readLayer;
  }

  static async create(model: JambaModel, o: PromptGeneratorOptions): Promise<PromptGenerator> {
    const H = model.config.hiddenSize, L = model.config.numHiddenLayers;
    const readLayer = o.readLayer ?? Math.max(1, Math.round(L / 4));
    if (!Number.isInteger(readLayer) || readLayer < 1 || readLayer > L) throw new InvalidArgumentError(`readLayer must be an integer in [1, ${L}]`);
    let heads = o.heads ?? 4;
    if (!Number.isInteger(heads) || heads < 1) throw new InvalidArgumentError('heads must be a positive integer');
    if (o.heads === undefined) while (H % heads !== 0) heads--;
    if (H % heads !== 0) throw new InvalidArgumentError(`heads (${heads}) must divide the hidden size ${H}`);
    const ffHidden = o.ffHidden ?? 2 * H, seed = o.seed ?? 1;
    const base = await SoftPrompt.create(model, { numVirtualTokens: o.numVirtualTokens, init: o.init, position: o.position, seed });
    const network = sequential(
      rmsNorm(H, { name: 'generator.input_norm' }),
      attentionPool(H, o.numVirtualTokens, heads, { seed: seed + 10, name: 'generator.pool' }),
      swigluMlp(H, ffHidden, { seed: seed + 20, name: 'generator.mlp', zeroOutput: true }),
    );
    return new PromptGenerator(model, base, network, readLayer);
  }

  /** Every trainable parameter: the base prompt and the network. */
  get params(): Param[] {
    return [this.base.param, ...this.network.params];
  }

  get numVirtualTokens(): number {
    return this.base.numVirtualTokens;
  }

  /** The prompt for an input, with the backward of the generator (from ∂L/∂prompt). */
  private async generate(input: number[], signal?: AbortSignal): Promise<{ prompt: Rows; back: (d: Float32Array) => void }> {
    const H = this.model.config.hiddenSize, bos = this.model.tokenizer.bosTokenId ?? 1;
    const early = await this.model.forwardForGrad([{ segments: [{ ids: [bos, ...input] }] }], { stopAtLayer: this.readLayer, outputs: ['hidden'], signal });
    early.dispose();
    const h = early.hidden![0]!;
    const net = this.network.forward(rows(Float64Array.from(h), h.length / H, H));
    const p = net.y.data.map((v, i) => v + this.base.param.value[i]!);
    return {
      prompt: rows(p, this.numVirtualTokens, H),
      back: (d) => {
        const g = Float64Array.from(d);
        for (let i = 0; i < g.length; i++) this.base.param.grad[i] = this.base.param.grad[i]! + g[i]!;
        net.back(rows(g, this.numVirtualTokens, H));
      },
    };
  }

  /** The prompt rows for an input text or ids (n × hiddenSize), to pass as `inputsEmbeds` after BOS ('after-bos'). */
  async promptFor(input: string | ArrayLike<number>, o: { signal?: AbortSignal } = {}): Promise<Float32Array> {
    const ids = await itemIds(this.model, input, 'input');
    return Float32Array.from((await this.generate(ids, o.signal)).prompt.data);
  }

  private async run(items: TrainItem[], optimizer: Optimizer | undefined, signal?: AbortSignal): Promise<{ loss: number; tokens: number }> {
    if (!Array.isArray(items) || items.length === 0) throw new InvalidArgumentError('items must be a non-empty array');
    const gens = await Promise.all(items.map(async (it, i) => {
      if (it === null || typeof it !== 'object') throw new InvalidArgumentError(`items[${i}] must be { input, target? }`);
      return this.generate(await itemIds(this.model, it.input, `items[${i}].input`), signal);
    }));
    const examples = await Promise.all(items.map((it, i) => promptExample(this.model, Float32Array.from(gens[i]!.prompt.data), this.base.position, it, `items[${i}]`)));
    if (!optimizer) {
      const tape = await this.model.forwardForGrad(examples, { signal });
      tape.dispose();
      return { loss: tape.loss, tokens: count(examples) };
    }
    const { loss, grads } = await this.model.valueAndGrad(examples, { signal });
    optimizer.zeroGrad();
    const segment = this.base.position === 'first' ? 0 : 1;
    gens.forEach((g, i) => g.back(grads[i]![segment]!));
    optimizer.step();
    return { loss, tokens: count(examples) };
  }

  /** One optimizer step (of every parameter in `params`) on the mean loss over the items' targets. */
  step(items: TrainItem[], optimizer: Optimizer, o: { signal?: AbortSignal } = {}): Promise<{ loss: number; tokens: number }> {
    return this.run(items, optimizer, o.signal);
  }

  /** The mean NLL per target token of `items`, each with the prompt generated from its input. */
  evaluate(items: TrainItem[], o: { signal?: AbortSignal } = {}): Promise<{ loss: number; tokens: number }> {
    return this.run(items, undefined, o.signal);
  }

  /** Writes the base prompt as a PEFT adapter and the network beside it (generator.safetensors). */
  async save(dir: string): Promise<void> {
    await this.base.save(dir);
    writeFloatTensors(path.join(dir, 'generator.safetensors'),
      Object.fromEntries(this.network.params.map((p) => [p.name, { shape: p.shape, data: Float32Array.from(p.value) }])),
      { 'jamba_node.read_layer': String(this.readLayer) });
  }

  /** Reads a generator saved by `save` into this one (same shapes). */
  async load(dir: string): Promise<void> {
    const file = path.join(dir, 'generator.safetensors');
    if (!fs.existsSync(file)) throw new CheckpointError('no generator.safetensors', { file: dir });
    const base = await SoftPrompt.load(this.model, dir);
    if (base.numVirtualTokens !== this.numVirtualTokens) throw new CheckpointError(`the prompt has ${base.numVirtualTokens} rows, this generator ${this.numVirtualTokens}`, { file: dir });
    const { tensors } = readFloatTensors(file);
    for (const p of this.network.params) {
      const t = tensors.get(p.name);
      if (!t || t.data.length !== p.value.length) throw new CheckpointError(`no tensor of ${p.value.length} values for this generator`, { file, tensor: p.name });
      p.value.set(t.data);
    }
    this.base.param.value.set(base.param.value);
  }
}
