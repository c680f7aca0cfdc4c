/**
 * A Jamba checkpoint too large for the caches (about 450 MB of bf16 weights), for measuring how
 * fast decode streams weights from memory. Values are small random bf16 numbers; only the bytes
 * matter here, not what the model says.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../lib/config';
import { expectedTensors } from '../lib/graph';
import { defaultModelDir } from '../lib/paths';

const CONFIG = {
  model_type: 'jamba', vocab_size: 1024, hidden_size: 1024, intermediate_size: 2816, num_hidden_layers: 8,
  num_attention_heads: 16, num_key_value_heads: 4, attn_layer_period: 8, attn_layer_offset: 4, expert_layer_period: 2,
  expert_layer_offset: 1, num_experts: 4, num_experts_per_tok: 2, mamba_d_state: 16, mamba_d_conv: 4, mamba_expand: 2,
};

export interface BenchCheckpoint { dir: string; bytes: number; bytesPerToken: number }

export function writeBenchCheckpoint(dir: string): BenchCheckpoint {
  const cfg = parseConfig(CONFIG);
  const tensors = expectedTensors(cfg);
  // Bytes a decode step reads: every weight except the experts not routed to (top-k of E).
  let bytes = 0, unrouted = 0;
  for (const t of tensors) {
    const b = t.shape.reduce((a, c) => a * c, 1) * 2;
    bytes += b;
    if (/\.experts\.\d+\./.test(t.name)) unrouted += (b * (cfg.numExperts - cfg.numExpertsPerTok)) / cfg.numExperts;
  }
  const info = { dir, bytes, bytesPerToken: bytes - unrouted };
  const file = path.join(dir, 'model.safetensors');
  if (fs.existsSync(file)) return info;
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(CONFIG));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(defaultModelDir(), f), path.join(dir, f));
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, c) => a * c, 1) * 2;
    header[t.name] = { dtype: 'BF16', shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  let h = Buffer.from(JSON.stringify(header));
  h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  // A 64 KiB pattern of bf16 values in ±[2^-8, 2^-4), repeated: fast to write, no NaN or denormal.
  const pattern = Buffer.alloc(65536);
  let x = 12345;
  for (let i = 0; i < pattern.length; i += 2) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    pattern.writeUInt16LE(((x >>> 31) << 15) | ((119 + ((x >>> 8) & 3)) << 7) | ((x >>> 12) & 0x7f), i);
  }
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, h);
    for (let done = 0; done < off; done += pattern.length) fs.writeSync(fd, pattern, 0, Math.min(pattern.length, off - done));
  } finally {
    fs.closeSync(fd);
  }
  return info;
}
