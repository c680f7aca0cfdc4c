/**
 * The whole model on CUDA: parity with the Hugging Face float64 references in test/fixtures (bf16
 * tolerance: ‖Δ‖/‖ref‖ ≤ 2e-2 on logits), the Shakespeare validation NLL within 1% of 3.9765,
 * ExpertsInt8 likewise, and the engine's guarantees on the GPU: batched equals alone, snapshots
 * restore exactly, soft prompts of embedding rows reproduce the tokens.
 */
import fs from 'node:fs';
import path from 'node:path';
import { loadModel } from '../../lib/model';
import { windowedNll } from '../../lib/evaluate';
import { defaultModelDir } from '../../lib/paths';
import { ReferenceOutputs, bf16Matrices, bf16Store, expertsInt8Weights, loadWeights, referenceForward } from '../helpers/reference-model';
import { rng, writeRandomCheckpoint } from '../helpers/random-checkpoint';
import { BASE, CASES, GPU_CASES } from '../helpers/random-configs';
import { readTensor } from '../helpers/st-io';
import { CORPUS, SHAKESPEARE_REF, TINY_RANDOM } from '../helpers/paths';
import { relErr } from './checks';
import { buildPlan } from '../../lib/graph';
import { parseConfig } from '../../lib/config';
import { native, NativeModel, NativeSequence, SampleSpec } from '../../lib/native';
import { readCheckpointTensors } from '../../lib/safetensors';

export interface ModelCheck {
  name: string;
  run(): Promise<void>;
}

function close(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  const e = relErr(got, want);
  if (!(e <= tol)) throw new Error(`${what}: relative error ${e.toExponential(2)} > ${tol}`);
}

/**
 * The positions of `ids` before the first token that `ref` routes by a top-k margin under 0.01 in
 * some MoE layer's router logits: bf16 activations move those logits by a few hundredths on random
 * weights, so past a near-tie the GPU may route differently and rightly give other logits.
 */
function decidedPositions(ref: ReferenceOutputs, experts: number, k: number, tokens: number): number {
  let decided = tokens;
  for (const logits of ref.router.values())
    for (let t = 0; t < decided; t++) {
      const row = Array.from(logits.subarray(t * experts, (t + 1) * experts)).sort((a, b) => b - a);
      if (row[k - 1]! - row[k]! < 0.01) decided = t;
    }
  return decided;
}

const same = (what: string, a: unknown, b: unknown) => {
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${what} differ`);
};

export const modelChecks: ModelCheck[] = [
  {
    // The float64 reference routes some of seq2's tokens by top-2 margins of 0.002-0.006 in the
    // router logits, where bf16 activations move those logits by 0.02-0.04: bf16 storage alone,
    // emulated on the CPU, reproduces the 0.128 error the first GPU run measured against float64,
    // with 21 tokens routed differently. So the bf16 path is held to what bf16 can promise: the
    // float64 reference with the executor's bf16 storage (bf16Store, bf16Matrices), over the
    // positions before the first token whose routing that reference decides by less than 0.01.
    name: 'tiny-random fixture (sharded) on CUDA, bf16 and ExpertsInt8: logits against the reference with bf16 storage, up to the first near-tie in routing',
    async run() {
      const { cfg, w } = loadWeights(TINY_RANDOM);
      const ref = path.join(TINY_RANDOM, 'reference.safetensors');
      const V = cfg.vocabSize;
      const inner = (name: string) => (/down_proj/.test(name) ? cfg.intermediateSize : cfg.hiddenSize);
      let compared = 0;
      for (const int8 of [false, true]) {
        const weights = bf16Matrices(int8 ? expertsInt8Weights(w, inner) : w);
        const model = await loadModel(TINY_RANDOM, { device: 'cuda', expertsInt8: int8 });
        try {
          for (const i of [0, 1, 2]) {
            const ids = Array.from(readTensor(ref, `seq${i}.input_ids`).data);
            const want = referenceForward(cfg, weights, ids, [], bf16Store);
            const decided = decidedPositions(want, cfg.numExperts, cfg.numExpertsPerTok, ids.length);
            if (!decided) continue;
            const got = await model.logits(ids);
            close(`seq${i}${int8 ? ' int8' : ''}, positions 0-${decided - 1} of ${ids.length}`, got.subarray(0, decided * V), want.logits.subarray(0, decided * V), 1e-2);
            compared += decided;
          }
        } finally {
          await model.dispose();
        }
      }
      if (compared === 0) throw new Error('no position of the fixture is routed by a clear margin: nothing was compared');
    },
  },
  {
    name: 'random configurations on CUDA (widths, MHA/MQA/GQA, top-1/2/3, d_state 8-32, d_conv 2-4, biases, tied, one-kind schedules, f32/f16/bf16 files, a prompt past 1,024 tokens): logits against the reference with bf16 storage',
    async run() {
      let compared = 0;
      for (const [label, raw, dtype, shards] of [...CASES, ...GPU_CASES]) {
        const dir = writeRandomCheckpoint({ ...BASE, ...raw }, { dtype, shards, seed: 3 });
        try {
          const { cfg, w } = loadWeights(dir);
          // The dense Jamba-schedule case also runs a prompt past 1,024 tokens.
          const long = cfg.layerNumExperts.every((e) => e === 1) && cfg.layerTypes.includes('attention');
          const r = rng(7);
          const ids = [1, ...Array.from({ length: long ? 1100 : 70 }, () => 3 + Math.floor(r() * (cfg.vocabSize - 3)))];
          const want = referenceForward(cfg, bf16Matrices(w), ids, [], bf16Store);
          const decided = decidedPositions(want, cfg.numExperts, cfg.numExpertsPerTok, ids.length);
          if (!decided) continue;
          const model = await loadModel(dir, { device: 'cuda' });
          try {
            const V = cfg.vocabSize;
            close(`${label}: positions 0-${decided - 1} of ${ids.length}`, (await model.logits(ids)).subarray(0, decided * V), want.logits.subarray(0, decided * V), 1e-2);
            compared += decided;
          } finally {
            await model.dispose();
          }
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }
      if (compared < 1000) throw new Error(`only ${compared} positions were routed by a clear margin: too few to test`);
    },
  },
  {
    name: 'trace() on CUDA equals the CPU trace layer by layer (embedding, every layer output, router logits, final norm, logits)',
    async run() {
      const cuda = await loadModel(defaultModelDir(), { device: 'cuda' });
      const cpu = await loadModel(defaultModelDir());
      try {
        const ids = await cpu.tokenizer.encode('ROMEO:\nBut soft, what light through yonder window breaks?');
        const [got, want] = [await cuda.trace(ids), await cpu.trace(ids)];
        same('trace keys', Object.keys(got).sort(), Object.keys(want).sort());
        for (const k of Object.keys(want)) close(`trace ${k}`, got[k]!, want[k]!, 2e-2);
      } finally {
        await cuda.dispose();
        await cpu.dispose();
      }
    },
  },
  {
    name: 'Shakespeare model on CUDA: reference logits, validation NLL within 1% of 3.9765, ExpertsInt8 close',
    async run() {
      const ref = path.join(SHAKESPEARE_REF, 'reference.safetensors');
      const model = await loadModel(defaultModelDir(), { device: 'cuda' });
      const int8 = await loadModel(defaultModelDir(), { device: 'cuda', expertsInt8: true });
      try {
        const ids = Array.from(readTensor(ref, 'val.input_ids').data);
        const want = readTensor(ref, 'val.logits').data;
        close('val.logits', await model.logits(ids), want, 2e-2);
        close('val.logits with ExpertsInt8', await int8.logits(ids), want, 2e-2);
        const text = fs.readFileSync(CORPUS, 'utf8');
        const all = await model.tokenizer.encode(text, { addSpecialTokens: false });
        const val = all.slice(Math.floor(0.9 * all.length));
        const r = await windowedNll(model, val, { window: 512, maxTokens: 39936 });
        if (Math.abs(r.nll / 3.9765 - 1) > 0.01) throw new Error(`validation NLL ${r.nll.toFixed(4)} is not within 1% of 3.9765`);
        const r8 = await windowedNll(int8, val, { window: 512, maxTokens: 39936 });
        if (Math.abs(r8.nll / 3.9765 - 1) > 0.01) throw new Error(`ExpertsInt8 validation NLL ${r8.nll.toFixed(4)} is not within 1% of 3.9765`);
      } finally {
        await model.dispose();
        await int8.dispose();
      }
    },
  },
  {
    name: 'on CUDA, batched generation equals alone, snapshots restore exactly, grammar masks on the device, soft prompts reproduce tokens',
    async run() {
      const model = await loadModel(defaultModelDir(), { device: 'cuda', maxSequences: 8, contextLength: 1024 });
      try {
        if (model.inspect().device !== 'cuda') throw new Error('the model is not on the GPU');
        const prompts = ['ROMEO:\n', 'KING HENRY V:\nOnce more unto', 'First Citizen:\n'];
        const opts = { maxTokens: 24, temperature: 0.8, seed: 3 };
        const batch = await model.completeBatch(prompts, opts);
        for (let i = 0; i < prompts.length; i++) same(`prompt ${i} tokens`, batch[i]!.tokens, (await model.complete(prompts[i]!, opts)).tokens);
        // Greedy tokens drawn on the device equal the host's argmax of the same logits (logprobs keep them on the host).
        const greedy = { maxTokens: 24, temperature: 0 };
        same('greedy on the device vs on the host', (await model.complete(prompts[1]!, greedy)).tokens,
          (await model.complete(prompts[1]!, { ...greedy, logprobs: 0 })).tokens);
        const ids = await model.tokenizer.encode('JULIET:\nO Romeo, Romeo! wherefore art thou');
        const seq = model.createSequence(), other = model.createSequence();
        try {
          await seq.evaluate(ids.slice(0, 8));
          const snap = seq.snapshot();
          const a = await seq.evaluate(ids.slice(8), { logits: 'all' });
          other.restore(model.snapshotFromBuffer(snap.toBuffer()));
          same('logits after a restore', Array.from(await other.evaluate(ids.slice(8), { logits: 'all' })), Array.from(a));
        } finally {
          seq.dispose();
          other.dispose();
        }
        // Token-by-token decode (captured once as a CUDA graph, then replayed) against one prefill.
        const V = model.config.vocabSize;
        const full = await model.logits(ids);
        const step = model.createSequence();
        try {
          for (let t = 0; t < ids.length; t++) close(`decode step ${t}`, await step.evaluate([ids[t]!]), full.subarray(t * V, (t + 1) * V), 2e-2);
        } finally {
          step.dispose();
        }
        // Constrained decoding with the grammar's mask applied on the device equals the host's masked argmax (logprobs keep logits on the host).
        const json = { maxTokens: 60, temperature: 0, responseFormat: { type: 'json_schema' as const, json_schema: { schema: {
          type: 'object', additionalProperties: false, required: ['who', 'n'], properties: { who: { enum: ['Romeo', 'Juliet'] }, n: { type: 'integer', minimum: 0, maximum: 99 } } } } } };
        const dev = await model.complete(prompts[0]!, json);
        same('grammar-masked greedy on the device vs on the host', dev.tokens, (await model.complete(prompts[0]!, { ...json, logprobs: 0 })).tokens);
        JSON.parse(dev.text);
        same('soft prompt logits', Array.from(await model.logits(ids.slice(5), { inputsEmbeds: model.embeddings(ids.slice(0, 5)) })),
          Array.from(await model.logits(ids)));
      } finally {
        await model.dispose();
      }
    },
  },
  {
    // Review B2 and B3 (../shared/gpu-runs/2026-12-07-static-review.md): a graph captured for an
    // unmasked step replayed for a masked one at shifted arena addresses, and attention splits
    // taken from the longest sequence of the batch. A vocabulary of 4,100 makes a mask (520 B)
    // outgrow the placeholder's 256-B slot, and 3 sequences run each decode.
    name: 'captured decode steps: unmasked then masked then unmasked at one batch size equal the uncaptured passes; sequences of 100 and 700 tokens batched are bit-identical to each alone',
    async run() {
      const dir = writeRandomCheckpoint({ ...BASE, vocab_size: 4100, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 4, num_attention_heads: 4,
        num_key_value_heads: 2, attn_layer_period: 2, attn_layer_offset: 1, expert_layer_period: 2, expert_layer_offset: 0, num_experts: 4,
        num_experts_per_tok: 2 }, { dtype: 'BF16', seed: 5 });
      let model: NativeModel | null = null;
      try {
        const cfg = parseConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>);
        const plan = Object.assign(buildPlan(cfg, readCheckpointTensors(dir), { expertsInt8: false }), { device: 'cuda', maxSequences: 8, contextLength: 1024 });
        model = await native().NativeModel.load(plan);
        const m = model;
        const V = cfg.vocabSize, words = Math.ceil(V / 32), r = rng(9);
        const ids = (n: number) => Int32Array.from({ length: n }, () => 3 + Math.floor(r() * (V - 3)));
        const prompts = [ids(20), ids(33), ids(7)];
        const open = async (): Promise<NativeSequence[]> => {
          const seqs = prompts.map(() => m.newSequence());
          for (let q = 0; q < seqs.length; q++) await m.forward([seqs[q]!], [prompts[q]!], { logits: 'none' });
          return seqs;
        };
        // Row 0 greedy, row 1 sampled, row 2 returns its logits; `masked` gives rows 0 and 1 a grammar-like mask.
        const mask = Int32Array.from({ length: words }, () => (r() * 2 ** 32) | 0);
        const sample = (step: number, masked: boolean): Array<SampleSpec | undefined> => [
          { temperature: 0, topK: 0, topP: 1, seed: 1, step, ...(masked ? { mask } : {}) },
          { temperature: 0.9, topK: 0, topP: 1, seed: 1, step, ...(masked ? { mask } : {}) },
          undefined,
        ];
        // Both runs feed the same tokens: the first ones and row 2's are fixed here, rows 0 and 1 then take what they drew.
        const first = [ids(1), ids(1), ids(1)], row2 = Array.from({ length: 5 }, () => ids(1));
        const run = async (profile: boolean) => {
          const seqs = await open(), out: string[] = [];
          let next = first;
          for (const [step, masked] of [[0, false], [1, false], [2, true], [3, true], [4, false]] as const) {
            const res = await m.forward(seqs, next, { logits: 'last', sample: sample(step, masked), profile });
            out.push(JSON.stringify([Array.from(res.sampled ?? []), Array.from(res.logits)]));
            next = [Int32Array.of(res.sampled![0]!), Int32Array.of(res.sampled![1]!), row2[step]!];
          }
          seqs.forEach((q) => q.dispose());
          return out;
        };
        const uncaptured = await run(true), captured = await run(false);
        uncaptured.forEach((u, i) => { if (captured[i] !== u) throw new Error(`decode step ${i} (${i === 2 || i === 3 ? 'masked' : 'unmasked'}): the captured graph's tokens or logits differ from the uncaptured pass`); });
        // 100 and 700 tokens: 1 and 2 attention splits. Batched decode steps equal each sequence's alone, bit for bit.
        const long = [ids(100), ids(700)];
        const pair = async () => {
          const seqs = long.map(() => m.newSequence());
          for (let q = 0; q < 2; q++) await m.forward([seqs[q]!], [long[q]!], { logits: 'none' });
          return seqs;
        };
        const together = await pair(), apart = await pair();
        for (let step = 0; step < 4; step++) {
          const toks = [Int32Array.of(5 + step), Int32Array.of(900 + step)];
          const both = (await m.forward(together, toks, { logits: 'last' })).logits;
          for (let q = 0; q < 2; q++) {
            const alone = (await m.forward([apart[q]!], [toks[q]!], { logits: 'last' })).logits;
            const batched = both.subarray(q * V, (q + 1) * V);
            const i = alone.findIndex((x, j) => !Object.is(x, batched[j]));
            if (i >= 0) throw new Error(`step ${step}: the ${long[q]!.length}-token sequence batched differs from alone at logit ${i}: ${batched[i]} vs ${alone[i]}`);
          }
        }
        [...together, ...apart].forEach((q) => q.dispose());
      } finally {
        model?.dispose();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  },
];
