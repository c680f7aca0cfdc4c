/**
 * Neural recursion (AI21's frozen-LM paper, §4.2: "LM–Connector–LM"): the frozen model reads the
 * text once; a trained connector maps each row of that pass's final hidden states to an input
 * row of a second pass of the same frozen model, which predicts the next token. Only the
 * connector trains, through the frozen second pass (and, with a trainable first-pass prompt, a
 * cotangent through the first pass too).
 */
import fs from 'node:fs';
import path from 'node:path';
import { CheckpointError, InvalidArgumentError } from '../errors';
import type { GenerateOptions } from '../generation';
import type { JambaModel } from '../model';
import { Module, activation, linear, rows, sequential } from '../nn/layers';
import type { Optimizer } from '../nn/optim';
import { readFloatTensors, writeFloatTensors } from '../safetensors-io';
import { Rng, resolveSampling, sampleToken } from '../sampling';

export interface RecursiveLMOptions {
  /** The connector (hidden rows in, hidden rows out); default: W₂·silu(W₁·f + b₁) + b₂ with `hiddenUnits` units. */
  connector?: Module;
  hiddenUnits?: number;
  /** Initial values: W₁ ~ N(0, 1/H), W₂ ~ N(0, (0.05/√M)²), biases 0 (the design notes' toy), from this seed. */
  seed?: number;
}

export class RecursiveLM {
  readonly connector: Module;

  constructor(private readonly model: JambaModel, o: RecursiveLMOptions = {}) {
    const H = model.config.hiddenSize, M = o.hiddenUnits ?? 128, seed = o.seed ?? 1;
    if (o.connector) {
      this.connector = o.connector;
    } else {
      if (!Number.isInteger(M) || M < 1) throw new InvalidArgumentError('hiddenUnits must be a positive integer');
      const w1 = linear(H, M, { init: { std: 1 / Math.sqrt(H) }, seed, name: 'connector.fc1' });
      const w2 = linear(M, H, { init: { std: 0.05 / Math.sqrt(M) }, seed: seed + 1, name: 'connector.fc2' });
      for (const l of [w1, w2]) l.params[1]!.value.fill(0);
      this.connector = sequential(w1, activation('silu'), w2);
    }
  }

  /** The first pass: the final hidden states of [BOS, ...ids] minus the last token, one row per token to predict. */
  private async firstPass(window: number[], signal?: AbortSignal): Promise<Float32Array> {
    const bos = this.model.tokenizer.bosTokenId ?? 1;
    return this.model.hiddenStates([bos, ...window.slice(0, -1)], { signal });
  }

  private checkWindows(windows: ArrayLike<number>[]): number[][] {
    if (!Array.isArray(windows) || windows.length === 0) throw new InvalidArgumentError('windows must be a non-empty array of token id arrays');
    return windows.map((w, i) => {
      const ids = Array.from(w ?? []);
      if (ids.length === 0) throw new InvalidArgumentError(`windows[${i}] is empty`);
      ids.forEach((id, j) => {
        if (!Number.isInteger(id) || id < 0 || id >= this.model.config.vocabSize) throw new InvalidArgumentError(`windows[${i}][${j}] = ${String(id)} is not a token id`);
      });
      return ids;
    });
  }

  /**
   * The second pass's loss on `windows` (every token predicted: row t of pass 2 is the connector of
   * pass 1's row t, which read BOS and the tokens before token t), with a backward when `train`.
   */
  private async run(windows: ArrayLike<number>[], optimizer: Optimizer | undefined, signal?: AbortSignal): Promise<{ loss: number; tokens: number }> {
    const ws = this.checkWindows(windows);
    const H = this.model.config.hiddenSize;
    const passes = await Promise.all(ws.map(async (w) => {
      const f = await this.firstPass(w, signal);
      const c = this.connector.forward(rows(Float64Array.from(f), w.length, H));
      return { w, c };
    }));
    const examples = passes.map(({ w, c }) => ({
      segments: [{ embeds: Float32Array.from(c.y.data) }],
      targets: { rows: w.map((_, t) => t), ids: w },
    }));
    const tokens = ws.reduce((n, w) => n + w.length, 0);
    if (!optimizer) {
      const tape = await this.model.forwardForGrad(examples, { signal });
      tape.dispose();
      return { loss: tape.loss, tokens };
    }
    const { loss, grads } = await this.model.valueAndGrad(examples, { signal });
    optimizer.zeroGrad();
    passes.forEach(({ w, c }, i) => c.back(rows(Float64Array.from(grads[i]![0]!), w.length, H)));
    optimizer.step();
    return { loss, tokens };
  }

  /** One optimizer step of the connector on the mean next-token loss of `windows` at pass 2. */
  step(windows: ArrayLike<number>[], optimizer: Optimizer, o: { signal?: AbortSignal } = {}): Promise<{ loss: number; tokens: number }> {
    return this.run(windows, optimizer, o.signal);
  }

  /** The mean next-token NLL of `windows` at pass 2. */
  evaluate(windows: ArrayLike<number>[], o: { signal?: AbortSignal } = {}): Promise<{ loss: number; tokens: number }> {
    return this.run(windows, undefined, o.signal);
  }

  /**
   * Generates with the two passes: each new token is read by pass 1, its hidden state goes
   * through the connector into pass 2, whose logits choose the next token.
   */
  async generate(prompt: string | ArrayLike<number>, o: Pick<GenerateOptions, 'maxTokens' | 'temperature' | 'topK' | 'topP' | 'seed' | 'signal'> = {}): Promise<{ text: string; tokens: number[] }> {
    const ids = typeof prompt === 'string' ? await this.model.tokenizer.encode(prompt) : Array.from(prompt);
    if (ids.length === 0) throw new InvalidArgumentError('the prompt is empty');
    const max = o.maxTokens ?? 64, H = this.model.config.hiddenSize;
    const sampling = resolveSampling({ temperature: o.temperature ?? 0, topK: o.topK ?? 0, topP: o.topP ?? 1, seed: o.seed ?? 0 }, this.model.config.vocabSize);
    const eos = new Set([this.model.tokenizer.eosTokenId ?? 2]);
    const one = this.model.createSequence(), two = this.model.createSequence();
    const out: number[] = [];
    const rng = new Rng(sampling.seed);
    try {
      // Pass 1 reads BOS first, as in training; every new row's hidden state is needed, so every
      // row's logits are computed too (the prompt once, then one row a step).
      let next = [this.model.tokenizer.bosTokenId ?? 1, ...ids];
      for (let i = 0; i < max; i++) {
        const f = (await one.run({ tokens: next }, { logits: 'all', hidden: true, signal: o.signal })).hidden!;
        const c = this.connector.forward(rows(Float64Array.from(f), next.length, H)).y;
        const logits = (await two.run({ inputsEmbeds: Float32Array.from(c.data) }, { logits: 'last', signal: o.signal })).logits;
        const token = sampleToken(logits, sampling, rng, [...ids, ...out]);
        if (eos.has(token)) break;
        out.push(token);
        next = [token];
      }
    } finally {
      one.dispose();
      two.dispose();
    }
    return { text: this.model.tokenizer.decode([...ids, ...out]).slice(this.model.tokenizer.decode(ids).length), tokens: out };
  }

  /** Writes the connector's parameters (connector.safetensors). */
  save(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    writeFloatTensors(path.join(dir, 'connector.safetensors'),
      Object.fromEntries(this.connector.params.map((p) => [p.name, { shape: p.shape, data: Float32Array.from(p.value) }])));
  }

  /** Reads parameters saved by `save` into this connector (same architecture). */
  load(dir: string): void {
    const file = path.join(dir, 'connector.safetensors');
    const { tensors } = readFloatTensors(file);
    for (const p of this.connector.params) {
      const t = tensors.get(p.name);
      if (!t || t.data.length !== p.value.length) throw new CheckpointError(`no tensor of ${p.value.length} values for this connector`, { file, tensor: p.name });
      p.value.set(t.data);
    }
  }
}
