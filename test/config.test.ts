/** config.json parsing, defaults, schedules, validation, and the released checkpoint layouts. */
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, expectedTensors, parameterCounts, parseConfig } from '../lib';
import { LAYOUTS } from './helpers/paths';

test('defaults are transformers JambaConfig defaults', () => {
  const c = parseConfig({});
  expect(c).toMatchObject({
    vocabSize: 65536, hiddenSize: 4096, intermediateSize: 14336, numHiddenLayers: 32, numAttentionHeads: 32,
    numKeyValueHeads: 8, rmsNormEps: 1e-6, numExperts: 16, numExpertsPerTok: 2, expertLayerPeriod: 2,
    expertLayerOffset: 1, attnLayerPeriod: 8, attnLayerOffset: 4, mambaDState: 16, mambaDConv: 4, mambaExpand: 2,
    mambaDtRank: 256, mambaConvBias: true, mambaProjBias: false, tieWordEmbeddings: false, eosTokenIds: [2],
    headDim: 128, mambaDInner: 8192,
  });
  expect(c.layerTypes.flatMap((t, i) => (t === 'attention' ? [i] : []))).toEqual([4, 12, 20, 28]);
  expect(c.layerNumExperts.flatMap((n, i) => (n > 1 ? [i] : []))).toEqual(Array.from({ length: 16 }, (_, i) => 2 * i + 1));
});

test('"auto" dt rank is ceil(hidden / 16); null kv heads means MHA; eos lists', () => {
  expect(parseConfig({ hidden_size: 8192, mamba_dt_rank: 'auto', num_attention_heads: 64 }).mambaDtRank).toBe(512);
  expect(parseConfig({ hidden_size: 100, num_attention_heads: 4, num_key_value_heads: 2 }).mambaDtRank).toBe(7);
  expect(parseConfig({ num_key_value_heads: null }).numKeyValueHeads).toBe(32);
  expect(parseConfig({ eos_token_id: [2, 518] }).eosTokenIds).toEqual([2, 518]);
});

test.each([
  [{ attn_layer_offset: 8 }, 'attn_layer_offset'],
  [{ expert_layer_offset: 2, expert_layer_period: 2 }, 'expert_layer_offset'],
  [{ num_attention_heads: 3 }, 'num_attention_heads'],
  [{ num_key_value_heads: 5 }, 'num_key_value_heads'],
  [{ hidden_size: 0 }, 'hidden_size'],
  [{ hidden_size: 64.5 }, 'hidden_size'],
  [{ num_experts_per_tok: 17 }, 'num_experts_per_tok'],
  [{ rms_norm_eps: -1 }, 'rms_norm_eps'],
  [{ mamba_dt_rank: 'big' }, 'mamba_dt_rank'],
  [{ hidden_act: 'gelu' }, 'hidden_act'],
  [{ mamba_conv_bias: 'yes' }, 'mamba_conv_bias'],
  [{ vocab_size: 100, bos_token_id: 1, eos_token_id: 200 }, 'eos_token_id[0]'],
  [{ model_type: 'llama' }, 'model_type'],
  [{ num_experts: 1e9 }, 'num_experts'],
])('rejects %j naming %s', (raw, field) => {
  let err: unknown;
  try {
    parseConfig(raw);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as ConfigError).field).toBe(field);
  expect((err as ConfigError).message).toContain(field);
});

test.each(['jamba-v0.1', 'jamba-1.5-mini', 'jamba-1.5-large'])('%s: expected tensors and parameter counts match the released layout', (name) => {
  const layout = JSON.parse(fs.readFileSync(path.join(LAYOUTS, `${name}.json`), 'utf8')) as {
    config: Record<string, unknown>; total_params: number; active_params_approx: number; tensors: Record<string, number[]>;
  };
  const cfg = parseConfig(layout.config);
  const mine = Object.fromEntries(expectedTensors(cfg).map((t) => [t.name, t.shape]));
  expect(mine).toEqual(layout.tensors);
  const counts = parameterCounts(cfg);
  expect(counts.total).toBe(layout.total_params);
  expect(Math.abs(counts.active - layout.active_params_approx) / layout.active_params_approx).toBeLessThan(0.01);
});
