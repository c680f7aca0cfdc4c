/**
 * Parity with every reference of test/fixtures/jamba-tiny-random (a sharded checkpoint with
 * attention at layers 2 and 6 and MoE at odd layers), computed by transformers in float64.
 */
import path from 'node:path';
import { JambaModel, loadModel } from '../lib';
import { native } from '../lib/native';
import { readCheckpointTensors, readSafetensorsHeader } from '../lib/safetensors';
import { TINY_RANDOM } from './helpers/paths';
import { loadWeights, maxAbsDiff, referenceForward } from './helpers/reference-model';
import { readTensor } from './helpers/st-io';

const REF = path.join(TINY_RANDOM, 'reference.safetensors');
const INT8_REF = path.join(TINY_RANDOM, 'experts_int8.reference.safetensors');
const ref = (name: string) => readTensor(REF, name).data;
const TOL = 1e-4;

let model: JambaModel;
beforeAll(async () => {
  model = await loadModel(TINY_RANDOM);
});
afterAll(() => model.dispose());

describe.each([0, 1, 2])('sequence %i', (i) => {
  const ids = () => Array.from(ref(`seq${i}.input_ids`));

  test('embedding, every layer output, router logits, final norm and logits', async () => {
    const out = await model.trace(ids());
    expect(maxAbsDiff(out.embed!, ref(`seq${i}.embed`))).toBeLessThanOrEqual(TOL);
    for (let L = 0; L < model.config.numHiddenLayers; L++) {
      expect(maxAbsDiff(out[`layer${L}.out`]!, ref(`seq${i}.layer${L}.out`))).toBeLessThanOrEqual(TOL);
      if (model.config.layerNumExperts[L]! > 1)
        expect(maxAbsDiff(out[`layer${L}.router_logits`]!, ref(`seq${i}.layer${L}.router_logits`))).toBeLessThanOrEqual(TOL);
      else expect(out[`layer${L}.router_logits`]).toBeUndefined();
    }
    expect(maxAbsDiff(out.final_norm!, ref(`seq${i}.final_norm`))).toBeLessThanOrEqual(TOL);
    expect(maxAbsDiff(out.logits!, ref(`seq${i}.logits`))).toBeLessThanOrEqual(TOL);
  });

  test('logits() equals the reference, and so does the float64 reference model', async () => {
    const logits = await model.logits(ids());
    expect(maxAbsDiff(logits, ref(`seq${i}.logits`))).toBeLessThanOrEqual(TOL);
    const { cfg, w } = loadWeights(TINY_RANDOM);
    const r = referenceForward(cfg, w, ids());
    // The float64 reference should agree with transformers' float64 to float32 storage precision.
    expect(maxAbsDiff(r.logits, ref(`seq${i}.logits`))).toBeLessThanOrEqual(1e-5);
    for (let L = 0; L < cfg.numHiddenLayers; L++) expect(maxAbsDiff(r.layers[L]!, ref(`seq${i}.layer${L}.out`))).toBeLessThanOrEqual(1e-5);
  });
});

test('cached greedy decoding reproduces the 24 reference tokens', async () => {
  const input = Array.from(ref('gen.input_ids'));
  const expected = Array.from(ref('gen.output_ids')).slice(input.length);
  expect(await model.generateIds(input, { maxTokens: 24, temperature: 0 })).toEqual(expected);
  expect(maxAbsDiff(await model.logits(Array.from(ref('gen.output_ids'))), ref('gen.logits'))).toBeLessThanOrEqual(TOL);
});

test('cached decoding, one token at a time, gives the logits of a full forward', async () => {
  const ids = Array.from(ref('seq2.input_ids'));
  const V = model.config.vocabSize;
  const seq = model.createSequence();
  try {
    const first = await seq.evaluate(ids.slice(0, 30), { logits: 'all' });
    expect(maxAbsDiff(first, ref('seq2.logits').subarray(0, 30 * V))).toBeLessThanOrEqual(TOL);
    for (let t = 30; t < ids.length; t++) {
      const row = await seq.evaluate([ids[t]!], { logits: 'last' });
      expect(maxAbsDiff(row, ref('seq2.logits').subarray(t * V, (t + 1) * V))).toBeLessThanOrEqual(TOL);
    }
    expect(seq.position).toBe(ids.length);
  } finally {
    seq.dispose();
  }
});

describe('ExpertsInt8', () => {
  test('quantization is bit-exact against experts_int8.reference.safetensors', () => {
    const tensors = readSafetensorsHeader(INT8_REF).tensors;
    const qNames = [...tensors.keys()].filter((n) => n.endsWith('_proj.weight'));
    expect(qNames.length).toBe(4 * 4 * 3);  // 4 MoE layers × 4 experts × 3 projections
    const ckpt = readCheckpointTensors(TINY_RANDOM);
    for (const name of qNames) {
      const w = readTensor(ckpt.get(name)!.file, name);
      const [n, k] = w.shape as [number, number];
      const { q, scale } = native().ops.quantizeInt8(Float32Array.from(w.data), n, k);
      expect({ name, q: Array.from(q) }).toEqual({ name, q: Array.from(readTensor(INT8_REF, name).data) });
      const s = readTensor(INT8_REF, name.replace(/weight$/, 'weight_scale')).data;
      expect({ name, scale: Array.from(scale) }).toEqual({ name, scale: Array.from(s) });
    }
  });

  test('logits with int8 experts match logits_experts_int8, and memory shrinks', async () => {
    const q = await loadModel(TINY_RANDOM, { expertsInt8: true });
    try {
      for (const i of [0, 1, 2]) {
        const logits = await q.logits(Array.from(ref(`seq${i}.input_ids`)));
        expect(maxAbsDiff(logits, ref(`seq${i}.logits_experts_int8`))).toBeLessThanOrEqual(TOL);
        // and it is a different computation from the bf16 experts (else this test proves nothing)
        if (i === 2) expect(maxAbsDiff(logits, ref(`seq${i}.logits`))).toBeGreaterThan(TOL);
      }
      const before = model.inspect(), after = q.inspect();
      // The experts moved from bf16 to int8 at one byte per weight (4 layers × 4 experts × 3 × 128 × 64
      // weights, plus the same zero padding of the packed panels in both).
      const moved = before.loadedBytesByDtype.bf16! - after.loadedBytesByDtype.bf16!;
      expect(moved).toBeGreaterThanOrEqual(4 * 4 * 3 * 128 * 64 * 2);
      expect(after.loadedBytesByDtype.i8).toBe(moved / 2);
      expect(after.checkpointBytesByDtype).toEqual(before.checkpointBytesByDtype);
    } finally {
      await q.dispose();
    }
  });
});
