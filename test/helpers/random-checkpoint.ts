/**
 * Writes Jamba checkpoints with random weights for any config, in the released layout, so the
 * engine is tested on shapes and options the fixtures do not have. Every value is k / 2^s with
 * |k| < 256, exactly representable in bf16, f16 and f32, so the file holds what was generated.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../lib/config';
import { expectedTensors } from '../../lib/graph';
import { TINY_RANDOM } from './paths';
import { TensorToWrite, writeSafetensors } from './st-io';

import { rng } from './rng';

export { rng };

/** Values near uniform(-amp, amp) on a grid of amp/128: exact in every float dtype. */
export function exactValues(n: number, amp: number, rand: () => number, center = 0): Float32Array {
  const step = 2 ** Math.floor(Math.log2(amp / 128));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = center + Math.round(((rand() * 2 - 1) * amp) / step) * step;
  return out;
}

export interface RandomCheckpointOptions {
  dtype: 'F32' | 'BF16' | 'F16';
  shards?: number;
  seed?: number;
}

/** Creates a checkpoint folder for `config` (raw config.json fields) and returns its path. */
export function writeRandomCheckpoint(rawConfig: Record<string, unknown>, opts: RandomCheckpointOptions): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-rand-'));
  const raw = { model_type: 'jamba', ...rawConfig };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(raw));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(TINY_RANDOM, f), path.join(dir, f));
  const cfg = parseConfig(raw);
  const rand = rng(opts.seed ?? 1);
  const tensors: TensorToWrite[] = expectedTensors(cfg).map(({ name, shape }) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length > 1 ? shape[shape.length - 1]! : 1;
    let data: Float32Array;
    if (/layernorm|_norm/.test(name)) data = exactValues(n, 0.25, rand, 1);
    else if (name.endsWith('A_log')) data = exactValues(n, 1, rand, 1);
    else if (name.endsWith('.D')) data = exactValues(n, 0.5, rand, 1);
    else if (name.endsWith('dt_proj.bias')) data = exactValues(n, 1, rand, -2);
    else if (name.endsWith('conv1d.weight')) data = exactValues(n, 0.5, rand);
    else if (name.endsWith('.bias')) data = exactValues(n, 0.1, rand);
    else if (name.includes('embed_tokens')) data = exactValues(n, 1, rand);
    else data = exactValues(n, 1.5 / Math.sqrt(fanIn), rand);
    return { name, shape, data, dtype: opts.dtype };
  });
  const shards = opts.shards ?? 1;
  if (shards === 1) {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  } else {
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < shards; s++) {
      const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const part = tensors.filter((_, i) => i % shards === s);
      part.forEach((t) => (weightMap[t.name] = file));
      writeSafetensors(path.join(dir, file), part);
    }
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  }
  return dir;
}
