/**
 * JambaConfig: every field of transformers' configuration_jamba.py with its default, validated,
 * plus the derived layer schedule. Unknown extra fields (id2label, torch_dtype, …) are ignored.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from './errors';

export type LayerType = 'attention' | 'mamba';

export interface JambaConfig {
  vocabSize: number;
  tieWordEmbeddings: boolean;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  hiddenAct: string;
  rmsNormEps: number;
  padTokenId: number | null;
  bosTokenId: number | null;
  /** One or several ids; generation stops at any of them. */
  eosTokenIds: number[];
  slidingWindow: number | null;
  maxPositionEmbeddings: number;
  numExpertsPerTok: number;
  numExperts: number;
  expertLayerPeriod: number;
  expertLayerOffset: number;
  attnLayerPeriod: number;
  attnLayerOffset: number;
  mambaDState: number;
  mambaDConv: number;
  mambaExpand: number;
  mambaDtRank: number;
  mambaConvBias: boolean;
  mambaProjBias: boolean;
  // Derived
  headDim: number;
  mambaDInner: number;
  layerTypes: LayerType[];
  layerNumExperts: number[];
}

type Raw = Record<string, unknown>;

const MAX_DIM = 1 << 24;  // no Jamba dimension comes near 16 M; larger means a corrupt file

function int(raw: Raw, key: string, def: number | undefined, min: number, max = MAX_DIM): number {
  const v = raw[key] ?? def;
  if (v === undefined) throw new ConfigError(key, 'is required');
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new ConfigError(key, `must be an integer, got ${JSON.stringify(v)}`);
  if (v < min || v > max) throw new ConfigError(key, `must be in [${min}, ${max}], got ${v}`);
  return v;
}

function bool(raw: Raw, key: string, def: boolean): boolean {
  const v = raw[key] ?? def;
  if (typeof v !== 'boolean') throw new ConfigError(key, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function optionalId(raw: Raw, key: string, def: number | null): number | null {
  const v = key in raw ? raw[key] : def;
  if (v === null || v === undefined) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new ConfigError(key, `must be a token id, got ${JSON.stringify(v)}`);
  return v;
}

/** Validates a parsed config.json object. */
export function parseConfig(raw: unknown): JambaConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError('(root)', 'must be a JSON object');
  const r = raw as Raw;
  if (r.model_type !== undefined && r.model_type !== 'jamba') throw new ConfigError('model_type', `must be "jamba", got ${JSON.stringify(r.model_type)}`);

  const hiddenSize = int(r, 'hidden_size', 4096, 1);
  const numAttentionHeads = int(r, 'num_attention_heads', 32, 1);
  const kvRaw = r.num_key_value_heads === null ? numAttentionHeads : r.num_key_value_heads;
  const numKeyValueHeads = int({ num_key_value_heads: kvRaw }, 'num_key_value_heads', 8, 1);
  if (hiddenSize % numAttentionHeads !== 0)
    throw new ConfigError('num_attention_heads', `${numAttentionHeads} does not divide hidden_size ${hiddenSize}`);
  if (numAttentionHeads % numKeyValueHeads !== 0)
    throw new ConfigError('num_key_value_heads', `${numKeyValueHeads} does not divide num_attention_heads ${numAttentionHeads}`);

  const hiddenAct = r.hidden_act ?? 'silu';
  if (hiddenAct !== 'silu' && hiddenAct !== 'swish')
    throw new ConfigError('hidden_act', `only "silu" is supported, got ${JSON.stringify(hiddenAct)}`);

  const eps = r.rms_norm_eps ?? 1e-6;
  if (typeof eps !== 'number' || !(eps > 0) || eps > 1) throw new ConfigError('rms_norm_eps', `must be a number in (0, 1], got ${JSON.stringify(eps)}`);

  const numExperts = int(r, 'num_experts', 16, 1, 4096);
  const numExpertsPerTok = int(r, 'num_experts_per_tok', 2, 1, 4096);
  if (numExpertsPerTok > numExperts) throw new ConfigError('num_experts_per_tok', `${numExpertsPerTok} exceeds num_experts ${numExperts}`);

  const numHiddenLayers = int(r, 'num_hidden_layers', 32, 1, 4096);
  const attnLayerPeriod = int(r, 'attn_layer_period', 8, 1, 4096);
  const attnLayerOffset = int(r, 'attn_layer_offset', 4, 0, 4096);
  if (attnLayerOffset >= attnLayerPeriod) throw new ConfigError('attn_layer_offset', `${attnLayerOffset} must be less than attn_layer_period ${attnLayerPeriod}`);
  const expertLayerPeriod = int(r, 'expert_layer_period', 2, 1, 4096);
  const expertLayerOffset = int(r, 'expert_layer_offset', 1, 0, 4096);
  if (expertLayerOffset >= expertLayerPeriod) throw new ConfigError('expert_layer_offset', `${expertLayerOffset} must be less than expert_layer_period ${expertLayerPeriod}`);

  const dtRaw = r.mamba_dt_rank ?? 'auto';
  const mambaDtRank = dtRaw === 'auto' ? Math.ceil(hiddenSize / 16) : int({ mamba_dt_rank: dtRaw }, 'mamba_dt_rank', undefined, 1);
  const mambaExpand = int(r, 'mamba_expand', 2, 1, 64);

  const eosRaw = r.eos_token_id === undefined ? 2 : r.eos_token_id;
  const eosList = eosRaw === null ? [] : Array.isArray(eosRaw) ? eosRaw : [eosRaw];
  const eosTokenIds = eosList.map((v, i) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new ConfigError(`eos_token_id[${i}]`, `must be a token id, got ${JSON.stringify(v)}`);
    return v;
  });

  const sw = r.sliding_window ?? null;
  if (sw !== null && (typeof sw !== 'number' || !Number.isInteger(sw) || sw < 1)) throw new ConfigError('sliding_window', `must be null or a positive integer`);

  const vocabSize = int(r, 'vocab_size', 65536, 1, 1 << 22);
  const cfg: JambaConfig = {
    vocabSize,
    tieWordEmbeddings: bool(r, 'tie_word_embeddings', false),
    hiddenSize,
    intermediateSize: int(r, 'intermediate_size', 14336, 1),
    numHiddenLayers,
    numAttentionHeads,
    numKeyValueHeads,
    hiddenAct: 'silu',
    rmsNormEps: eps,
    padTokenId: optionalId(r, 'pad_token_id', 0),
    bosTokenId: optionalId(r, 'bos_token_id', 1),
    eosTokenIds,
    slidingWindow: sw as number | null,
    maxPositionEmbeddings: int(r, 'max_position_embeddings', 262144, 1, 1 << 30),
    numExpertsPerTok,
    numExperts,
    expertLayerPeriod,
    expertLayerOffset,
    attnLayerPeriod,
    attnLayerOffset,
    mambaDState: int(r, 'mamba_d_state', 16, 1, 4096),
    mambaDConv: int(r, 'mamba_d_conv', 4, 1, 64),
    mambaExpand,
    mambaDtRank,
    mambaConvBias: bool(r, 'mamba_conv_bias', true),
    mambaProjBias: bool(r, 'mamba_proj_bias', false),
    headDim: hiddenSize / numAttentionHeads,
    mambaDInner: mambaExpand * hiddenSize,
    layerTypes: [],
    layerNumExperts: [],
  };
  for (const [field, id] of [['pad_token_id', cfg.padTokenId], ['bos_token_id', cfg.bosTokenId]] as const)
    if (id !== null && id >= vocabSize) throw new ConfigError(field, `${id} is not below vocab_size ${vocabSize}`);
  eosTokenIds.forEach((id, i) => {
    if (id >= vocabSize) throw new ConfigError(`eos_token_id[${i}]`, `${id} is not below vocab_size ${vocabSize}`);
  });
  for (let i = 0; i < numHiddenLayers; i++) {
    cfg.layerTypes.push(i % attnLayerPeriod === attnLayerOffset ? 'attention' : 'mamba');
    cfg.layerNumExperts.push(i % expertLayerPeriod === expertLayerOffset ? numExperts : 1);
  }
  return cfg;
}

/** Reads and validates `<dir>/config.json`. */
export function readConfig(dir: string): JambaConfig {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError('(file)', `cannot read ${file}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError('(file)', `${file} is not valid JSON: ${(e as Error).message}`);
  }
  return parseConfig(raw);
}
