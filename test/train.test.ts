/**
 * The trainers: SoftPrompt's PEFT format (written as PEFT writes it, read as PEFT reads it, PEFT's
 * own adapters loaded with PEFT's placement), a step is a step of its gradient, and ID-PT's whole
 * chain (generator → float64 reference LM → loss) against finite differences.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CheckpointError, JambaModel, PromptGenerator, RecursiveLM, SoftPrompt, loadModel, nn } from '../lib';
import { Param, rows } from '../lib/nn';
import { readFloatTensors, writeFloatTensors } from '../lib/safetensors-io';
import { readSafetensorsHeader } from '../lib/safetensors';
import { EMBEDDED, TINY_RANDOM } from './helpers/paths';
import { referenceGrad, referenceLoss } from './helpers/reference-backward';
import { loadWeights } from './helpers/reference-model';

let model: JambaModel;
beforeAll(async () => {
  model = await loadModel(EMBEDDED);
});
afterAll(() => model.dispose());
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-train-'));

/**
 * The fields of PEFT's PromptTuningConfig as it serialises them (asdict of the dataclasses in
 * peft/config.py: PeftConfigMixin, PeftConfig, PromptLearningConfig, and
 * peft/tuners/prompt_tuning/config.py), read from PEFT's source.
 */
const PEFT_FIELDS = new Set([
  'task_type', 'peft_type', 'auto_mapping', 'peft_version', 'base_model_name_or_path', 'revision', 'inference_mode',
  'num_virtual_tokens', 'token_dim', 'num_transformer_submodules', 'num_attention_heads', 'num_layers', 'modules_to_save',
  'prompt_tuning_init', 'prompt_tuning_init_text', 'tokenizer_name_or_path', 'tokenizer_kwargs',
]);

test("SoftPrompt saves PEFT's prompt-tuning adapter: its config fields, one prompt_embeddings tensor, and reads it back", async () => {
  const dir = tmp();
  try {
    const p = await SoftPrompt.create(model, { numVirtualTokens: 5, init: { text: 'ROMEO:' } });
    await p.save(dir);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    for (const k of Object.keys(cfg)) expect([k, PEFT_FIELDS.has(k)]).toEqual([k, true]);
    expect(cfg).toMatchObject({
      peft_type: 'PROMPT_TUNING', task_type: 'CAUSAL_LM', num_virtual_tokens: 5, token_dim: model.config.hiddenSize,
      num_transformer_submodules: 1, prompt_tuning_init: 'TEXT', prompt_tuning_init_text: 'ROMEO:', inference_mode: true,
    });
    // PEFT's TEXT init validation: a TEXT init needs a tokenizer path.
    expect(typeof cfg.tokenizer_name_or_path).toBe('string');
    const header = readSafetensorsHeader(path.join(dir, 'adapter_model.safetensors'));
    expect([...header.tensors.keys()]).toEqual(['prompt_embeddings']);
    expect(header.tensors.get('prompt_embeddings')).toMatchObject({ dtype: 'F32', shape: [5, model.config.hiddenSize] });
    expect(header.metadata).toEqual({ format: 'pt', 'jamba_node.position': 'after-bos' });
    // TEXT init as PEFT does it: the tokenizer's ids with special tokens (BOS first), repeated to length.
    const ids = await model.tokenizer.encode('ROMEO:');
    const rowsOf = await model.embeddings(Array.from({ length: 5 }, (_, i) => ids[i % ids.length]!));
    expect(Array.from(p.embeds())).toEqual(Array.from(rowsOf));
    const back = await SoftPrompt.load(model, dir);
    expect(back.position).toBe('after-bos');
    expect(back.embeds()).toEqual(p.embeds());
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("an adapter written by PEFT (bf16, no placement in it) loads with PEFT's placement: [P][BOS] text", async () => {
  const dir = tmp();
  try {
    const H = model.config.hiddenSize;
    // As PEFT's save_pretrained writes it: json.dumps(indent=2, sort_keys=True), safetensors metadata {"format": "pt"}.
    const cfg = {
      auto_mapping: null, base_model_name_or_path: 'ai21labs/some-jamba', inference_mode: true, modules_to_save: null, num_attention_heads: 4,
      num_layers: 8, num_transformer_submodules: 1, num_virtual_tokens: 3, peft_type: 'PROMPT_TUNING', peft_version: '0.17.0',
      prompt_tuning_init: 'RANDOM', prompt_tuning_init_text: null, revision: null, task_type: 'CAUSAL_LM', token_dim: H,
      tokenizer_kwargs: null, tokenizer_name_or_path: null,
    };
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(cfg, null, 2));
    const values = Float32Array.from({ length: 3 * H }, (_, i) => Math.sin(i) * 0.05);
    // bf16 on disk: round each value (the loader widens exactly).
    const f = new Float32Array(1), u = new Uint32Array(f.buffer);
    const bf = values.map((v) => {
      f[0] = v;
      u[0] = (u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) & 0xffff0000;
      return f[0]!;
    });
    const body = Buffer.alloc(bf.length * 2);
    bf.forEach((v, i) => {
      f[0] = v;
      body.writeUInt16LE(u[0]! >>> 16, i * 2);
    });
    let h = Buffer.from(JSON.stringify({ __metadata__: { format: 'pt' }, prompt_embeddings: { dtype: 'BF16', shape: [3, H], data_offsets: [0, body.length] } }));
    h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    fs.writeFileSync(path.join(dir, 'adapter_model.safetensors'), Buffer.concat([len, h, body]));
    const p = await SoftPrompt.load(model, dir);
    expect(p.position).toBe('first');
    expect(p.embeds()).toEqual(bf);
    // PEFT's placement: the prompt, then the text with its BOS.
    const text = await model.tokenizer.encode('KING:\nWhat news?');
    const viaScore = await model.score(text.slice(1), { inputsEmbeds: await p.inputsEmbeds(), context: [text[0]!] });
    const viaEval = await p.evaluate([{ input: text.slice(1) }]);
    expect(viaEval.loss).toBeCloseTo(-viaScore.sum / viaScore.logprobs.length, 5);
    // A P-tuning adapter's saved prompt is materialised too; other PEFT types are refused by name.
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...cfg, peft_type: 'LORA' }));
    await expect(SoftPrompt.load(model, dir)).rejects.toThrow(/peft_type is "LORA"/);
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...cfg, token_dim: 7 }));
    writeFloatTensors(path.join(dir, 'adapter_model.safetensors'), { prompt_embeddings: { shape: [3, 7], data: new Float32Array(21) } });
    await expect(SoftPrompt.load(model, dir)).rejects.toBeInstanceOf(CheckpointError);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a SoftPrompt step is an Adam step along valueAndGrad\'s gradient, and lowers the loss it was taken on', async () => {
  const p = await SoftPrompt.create(model, { numVirtualTokens: 4, seed: 3 });
  const items = [{ input: 'first citizen:\nbefore we proceed any further, hear me speak.' }, { input: 'all:', target: '\nspeak, speak.' }];
  const before = (await p.evaluate(items)).loss;
  const v0 = p.param.value.slice();
  const twin: Param = { name: 'p', shape: p.param.shape, value: v0.slice(), grad: new Float64Array(v0.length) };
  const opt = nn.adam([p.param], { lr: 1e-2 }), twinOpt = nn.adam([twin], { lr: 1e-2 });
  const { loss } = await p.step(items, opt);
  expect(loss).toBeCloseTo(before, 6);
  // The same gradient from valueAndGrad on the same layout, through the same optimizer rule.
  const bos = model.tokenizer.bosTokenId!;
  const t0 = await model.tokenizer.encode(items[0]!.input, { addSpecialTokens: false });
  const a1 = await model.tokenizer.encode(items[1]!.input, { addSpecialTokens: false }), t1 = await model.tokenizer.encode(items[1]!.target!, { addSpecialTokens: false });
  const P = Float32Array.from(v0);
  const { grads } = await model.valueAndGrad([
    { segments: [{ ids: [bos] }, { embeds: P }, { ids: t0 }], targets: { rows: t0.map((_, j) => 4 + j), ids: t0 } },
    { segments: [{ ids: [bos] }, { embeds: P }, { ids: [...a1, ...t1] }], targets: { rows: t1.map((_, j) => 4 + a1.length + j), ids: t1 } },
  ]);
  for (const g of grads) g[1]!.forEach((v, i) => (twin.grad[i] = twin.grad[i]! + v));
  twinOpt.step();
  expect(p.param.value).toEqual(twin.value);
  expect((await p.evaluate(items)).loss).toBeLessThan(before);
});

test('ID-PT end to end in float64: generator → reference LM → loss, against finite differences (≤ 1e-6)', async () => {
  const { cfg, w } = loadWeights(TINY_RANDOM);
  const H = cfg.hiddenSize, n = 2, k = 3;
  const tiny = await loadModel(TINY_RANDOM);
  try {
    const gen = await PromptGenerator.create(tiny, { numVirtualTokens: n, readLayer: k, heads: 2, ffHidden: 12, init: 'random', seed: 5 });
    // The MLP's output starts at zero (the generator starts as its base prompt); move it so every parameter matters.
    for (const p of gen.params) if (p.name.endsWith('down_proj.weight')) p.value.forEach((_, i, a) => (a[i] = Math.cos(i) * 0.05));
    const emb = w.get('model.embed_tokens.weight')!;
    const input = [1, 30, 31, 32, 33], text = [40, 41, 42, 43];
    const rowsOf = (ids: number[]) => {
      const r = new Float64Array(ids.length * H);
      ids.forEach((id, t) => r.set(emb.subarray(id * H, (id + 1) * H), t * H));
      return r;
    };
    // h_k(x): the reference's residual stream after k layers.
    const hk = referenceGrad(cfg, w, rowsOf(input), { layers: k }).hidden;
    const lmRows = (prompt: Float64Array) => {
      const r = new Float64Array((1 + n + text.length) * H);
      r.set(emb.subarray(H, 2 * H));  // BOS
      r.set(prompt, H);
      r.set(rowsOf(text), (1 + n) * H);
      return r;
    };
    const targets = { rows: [n, n + 1, n + 2, n + 3], ids: text };
    const params = gen.params;
    const base = params[0]!;
    const promptOf = () => {
      const net = gen.network.forward(rows(hk.slice(), input.length, H));
      return { p: net.y.data.map((v, i) => v + base.value[i]!), back: net.back };
    };
    const loss = () => referenceLoss(cfg, w, lmRows(promptOf().p), { targets });
    for (const p of params) p.grad.fill(0);
    const { p: prompt, back } = promptOf();
    const g = referenceGrad(cfg, w, lmRows(prompt), { targets });
    const dP = g.dRows.slice(H, (1 + n) * H);
    dP.forEach((v, i) => (base.grad[i] = base.grad[i]! + v));
    back(rows(dP, n, H));
    let worst = 0;
    for (const p of params) {
      const floor = 1e-3 * Math.max(...p.grad.map(Math.abs));
      // eps 1e-3: the loss is O(1) and small gradients would drown in the differences' round-off at 1e-4
      // (the five-point stencil's truncation error is far below either).
      const { maxRel } = nn.gradcheck(() => loss(), p.value, p.grad.slice(), { eps: 1e-3, samples: 3, floor, seed: p.value.length });
      worst = Math.max(worst, maxRel);
      expect([p.name, maxRel <= 1e-6]).toEqual([p.name, true]);
    }
    console.log(`ID-PT chain: ${params.length} parameter tensors, worst relative error ${worst.toExponential(2)}`);
  } finally {
    await tiny.dispose();
  }
});

test('RecursiveLM.generate follows its two passes: each greedy token is the argmax of pass 2 over the connector of pass 1 on BOS and the text so far', async () => {
  const lm = new RecursiveLM(model, { hiddenUnits: 8, seed: 3 });
  const prompt = [5, 9, 11];
  const { tokens } = await lm.generate(prompt, { maxTokens: 4 });
  expect(tokens.length).toBeGreaterThan(0);
  const H = model.config.hiddenSize, V = model.config.vocabSize;
  const bos = model.tokenizer.bosTokenId ?? 1;
  for (let i = 0; i < tokens.length; i++) {
    const text = [...prompt, ...tokens.slice(0, i)];
    const f = await model.hiddenStates([bos, ...text]);
    const c = lm.connector.forward(nn.rows(Float64Array.from(f), text.length + 1, H)).y;
    const logits = await model.logits([], { inputsEmbeds: Float32Array.from(c.data) });
    const last = logits.subarray(text.length * V, (text.length + 1) * V);
    expect(tokens[i]).toBe(last.indexOf(Math.max(...last)));
  }
});

test('RecursiveLM and PromptGenerator save and load their parameters; bad folders are refused by name', async () => {
  const dir = tmp();
  try {
    const lm = new RecursiveLM(model, { hiddenUnits: 8, seed: 2 });
    lm.connector.params[0]!.value[3] = 0.125;
    lm.save(dir);
    const other = new RecursiveLM(model, { hiddenUnits: 8, seed: 9 });
    other.load(dir);
    other.connector.params.forEach((p, i) => expect(p.value).toEqual(lm.connector.params[i]!.value.map((v) => Math.fround(v))));
    expect(() => new RecursiveLM(model, { hiddenUnits: 4 }).load(dir)).toThrow(CheckpointError);
    const g = await PromptGenerator.create(model, { numVirtualTokens: 2, ffHidden: 8 });
    g.network.params[0]!.value[0] = 2;
    await g.save(dir);
    const g2 = await PromptGenerator.create(model, { numVirtualTokens: 2, ffHidden: 8, seed: 4 });
    await g2.load(dir);
    expect(g2.network.params[0]!.value[0]).toBe(2);
    expect(readFloatTensors(path.join(dir, 'generator.safetensors')).metadata['jamba_node.read_layer']).toBe(String(g.readLayer));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
