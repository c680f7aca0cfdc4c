/**
 * `jamba train-prompt`: prompt tuning from the command line. Data: JSONL lines of { input, target }
 * (the loss on the target), or a text file cut into windows (the loss on every token). A held-out
 * share is evaluated as training goes; the output folder is a PEFT prompt-tuning adapter plus the
 * optimizer's state, and `--resume` continues from it exactly (each step's batch depends only on
 * the seed and the step number).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { adam } from '../nn/optim';
import { seeded } from '../nn/layers';
import { readFloatTensors, writeFloatTensors } from '../safetensors-io';
import { SoftPrompt, TrainItem } from '../train/soft-prompt';
import type { PromptInit, PromptPosition } from '../train/soft-prompt';
import { UsageError, log, num, open } from './common';

export const TRAIN_PROMPT_HELP = `Usage: jamba train-prompt --data FILE --out DIR [options]

Trains a soft prompt (prompt tuning) through the frozen model and writes it as a Hugging Face PEFT
prompt-tuning adapter (adapter_config.json + adapter_model.safetensors), which PEFT loads, with the
optimizer's state beside it so that --resume continues exactly.

Data: a .jsonl file of {"input": "...", "target": "..."} lines (the loss is on the target; without
a target, on every token of the input), or any other file as text, cut into --window-token windows.

Options:
  --data FILE              training data (JSONL or text)
  --out DIR                the adapter folder (written after every evaluation and at the end)
  --model DIR              checkpoint folder (default: the embedded model)
  --virtual-tokens N       prompt vectors (default 20)
  --init SPEC              vocab (default: embeddings of random tokens), random, text:STRING
  --position P             after-bos ([BOS][P] text, default) or first ([P][BOS] text, as PEFT)
  --steps N                optimizer steps (default 100)
  --batch N                examples a step (default 4)
  --window N               tokens a window, for text data (default 96)
  --lr R                   Adam's learning rate (default 0.02)
  --weight-decay W         AdamW's decoupled weight decay (default 0)
  --clip N                 clip the gradient to this L2 norm (default: none)
  --held-out F             the share of the data held out (default 0.1: the last lines, or text)
  --eval-every N           evaluate on the held-out data every N steps (default 20)
  --seed S                 (default 1)
  --resume                 continue the run saved in --out
  --json                   print one JSON object with the results at the end
  -h, --help`;

interface State {
  step: number;
  seed: number;
  history: Array<{ step: number; loss: number; heldOut?: number }>;
  options: Record<string, unknown>;
}

/** The training and held-out examples of a data file. */
async function readData(file: string, heldOut: number, window: number, tokenize: (t: string) => Promise<number[]>):
    Promise<{ kind: 'items'; train: TrainItem[]; test: TrainItem[] } | { kind: 'text'; train: number[]; test: TrainItem[] }> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
  }
  if (file.endsWith('.jsonl')) {
    const items: TrainItem[] = [];
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      let o: unknown;
      try {
        o = JSON.parse(line);
      } catch (e) {
        throw new UsageError(`${file}:${i + 1}: not JSON (${(e as Error).message})`);
      }
      const { input, target } = (o ?? {}) as { input?: unknown; target?: unknown };
      if (typeof input !== 'string' || (target !== undefined && typeof target !== 'string'))
        throw new UsageError(`${file}:${i + 1}: each line must be {"input": string, "target"?: string}`);
      items.push(target === undefined ? { input } : { input, target });
    });
    const cut = Math.max(1, Math.round(items.length * (1 - heldOut)));
    if (items.length < 2 || cut >= items.length) throw new UsageError(`${file}: too few lines (${items.length}) to hold ${heldOut} out`);
    return { kind: 'items', train: items.slice(0, cut), test: items.slice(cut) };
  }
  const cut = Math.floor(text.length * (1 - heldOut));
  const train = await tokenize(text.slice(0, cut)), test = await tokenize(text.slice(cut));
  if (train.length < window + 1) throw new UsageError(`${file}: the training text has ${train.length} tokens, fewer than a window`);
  const windows = Math.max(1, Math.min(32, Math.floor(test.length / window)));
  return { kind: 'text', train, test: Array.from({ length: windows }, (_, i) => ({ input: test.slice(Math.floor((i * test.length) / windows), Math.floor((i * test.length) / windows) + window) })) };
}

function parseInit(spec: string | undefined): PromptInit {
  if (spec === undefined || spec === 'vocab') return 'sampled-vocab';
  if (spec === 'random') return 'random';
  if (spec.startsWith('text:') && spec.length > 5) return { text: spec.slice(5) };
  throw new UsageError(`--init must be vocab, random or text:STRING, got ${JSON.stringify(spec)}`);
}

export async function trainPrompt(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: 'string' }, out: { type: 'string' }, model: { type: 'string' }, 'virtual-tokens': { type: 'string' }, init: { type: 'string' },
      position: { type: 'string' }, steps: { type: 'string' }, batch: { type: 'string' }, window: { type: 'string' }, lr: { type: 'string' },
      'weight-decay': { type: 'string' }, clip: { type: 'string' }, 'held-out': { type: 'string' }, 'eval-every': { type: 'string' },
      seed: { type: 'string' }, resume: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${TRAIN_PROMPT_HELP}\n`);
    return 0;
  }
  if (!values.data) throw new UsageError('--data FILE is required');
  if (!values.out) throw new UsageError('--out DIR is required');
  const positive = (v: string | undefined, name: string, dflt: number, int = true) => {
    const n = num(v, name, int) ?? dflt;
    if (!(n > 0)) throw new UsageError(`--${name} must be positive`);
    return n;
  };
  const n = positive(values['virtual-tokens'], 'virtual-tokens', 20), steps = positive(values.steps, 'steps', 100), batch = positive(values.batch, 'batch', 4);
  const window = positive(values.window, 'window', 96), lr = positive(values.lr, 'lr', 0.02, false), evalEvery = positive(values['eval-every'], 'eval-every', 20);
  const heldOut = num(values['held-out'], 'held-out') ?? 0.1;
  if (!(heldOut > 0 && heldOut < 1)) throw new UsageError('--held-out must be in (0, 1)');
  const wd = num(values['weight-decay'], 'weight-decay') ?? 0;
  if (!(wd >= 0)) throw new UsageError('--weight-decay must be ≥ 0');
  const clip = values.clip === undefined ? undefined : positive(values.clip, 'clip', 1, false);
  const seed = num(values.seed, 'seed', true) ?? 1;
  const position = (values.position ?? 'after-bos') as PromptPosition;
  if (position !== 'after-bos' && position !== 'first') throw new UsageError('--position must be after-bos or first');
  const init = parseInit(values.init);
  const out = values.out, stateFile = path.join(out, 'trainer_state.json'), optFile = path.join(out, 'optimizer.safetensors');
  if (values.resume && !fs.existsSync(stateFile)) throw new UsageError(`--resume: ${out} holds no run to resume (no trainer_state.json)`);
  if (!values.resume && fs.existsSync(stateFile)) throw new UsageError(`${out} already holds a run: add --resume to continue it, or choose another --out`);

  const json = !!values.json;
  const model = await open(values.model, false, json);
  try {
    const data = await readData(values.data, heldOut, window, (t) => model.tokenizer.encode(t, { addSpecialTokens: false }));
    let prompt: SoftPrompt;
    let state: State = { step: 0, seed, history: [], options: { virtualTokens: n, position, lr, batch, window, weightDecay: wd, clip: clip ?? null } };
    const optimizerOf = (p: SoftPrompt) => adam([p.param], { lr, weightDecay: wd, ...(clip !== undefined ? { clipGradNorm: clip } : {}) });
    let optimizer;
    if (values.resume) {
      state = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as State;
      prompt = await SoftPrompt.load(model, out);
      optimizer = optimizerOf(prompt);
      // The float64 master copy and moments, so the run continues exactly as if it had not stopped.
      const { tensors } = readFloatTensors(optFile);
      const get = (k: string) => {
        const t = tensors.get(k);
        if (!t || t.data.length !== prompt.param.value.length) throw new UsageError(`${optFile}: no ${k} of ${prompt.param.value.length} values`);
        return t.data;
      };
      prompt.param.value.set(get('value'));
      optimizer.loadState({ step: state.step, moments: { prompt_embeddings: { m: get('m'), v: get('v') } } });
      if (!json) log(`jamba: resuming ${out} at step ${state.step}`);
    } else {
      prompt = await SoftPrompt.create(model, { numVirtualTokens: n, init, position, seed });
      optimizer = optimizerOf(prompt);
    }
    const save = async () => {
      await prompt.save(out, { baseModel: values.model ?? 'jamba-tiny-shakespeare' });
      const s = optimizer.state().moments.prompt_embeddings!, shape = prompt.param.shape;
      writeFloatTensors(optFile, { value: { shape, data: prompt.param.value.slice() }, m: { shape, data: s.m }, v: { shape, data: s.v } });
      fs.writeFileSync(stateFile, `${JSON.stringify(state, null, 2)}\n`);
    };
    const batchAt = (step: number): TrainItem[] => {
      const rand = seeded(state.seed * 1_000_003 + step);
      if (data.kind === 'items') return Array.from({ length: batch }, () => data.train[Math.floor(rand() * data.train.length)]!);
      return Array.from({ length: batch }, () => {
        const o = Math.floor(rand() * (data.train.length - window));
        return { input: data.train.slice(o, o + window) };
      });
    };
    const t0 = performance.now();
    let tokens = 0;
    let last: number | undefined;
    for (let step = state.step + 1; step <= steps; step++) {
      const r = await prompt.step(batchAt(step), optimizer);
      tokens += r.tokens;
      const entry: State['history'][number] = { step, loss: r.loss };
      if (step % evalEvery === 0 || step === steps) entry.heldOut = last = (await prompt.evaluate(data.test)).loss;
      state.step = step;
      state.history.push(entry);
      const rate = tokens / ((performance.now() - t0) / 1000);
      if (!json) log(`step ${step}/${steps}  loss ${r.loss.toFixed(4)}${entry.heldOut !== undefined ? `  held-out ${entry.heldOut.toFixed(4)}` : ''}  ${rate.toFixed(0)} tokens/s`);
      if (entry.heldOut !== undefined) await save();
    }
    if (state.step >= steps && last === undefined) last = (await prompt.evaluate(data.test)).loss;
    await save();
    if (json) process.stdout.write(`${JSON.stringify({ out, steps: state.step, heldOut: last, history: state.history })}\n`);
    else log(`jamba: wrote ${out} (held-out NLL ${last?.toFixed(4)})`);
    return 0;
  } finally {
    await model.dispose();
  }
}
