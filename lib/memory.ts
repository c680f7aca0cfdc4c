/**
 * Memory planning: what loading a checkpoint will allocate, and what the machine can give, so a
 * model too large is refused with InsufficientMemoryError before anything is allocated, instead
 * of the process being killed by the OS halfway through.
 */
import fs from 'node:fs';
import os from 'node:os';
import { JambaError } from './errors';
import type { TensorInfo } from './safetensors';

/** Loading the model would need more memory than is available. */
export class InsufficientMemoryError extends JambaError {
  constructor(readonly neededBytes: number, readonly availableBytes: number, what: string) {
    super('insufficient_memory', `${what} needs about ${gib(neededBytes)} of memory but only ${gib(availableBytes)} is available`);
  }
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;

/**
 * Bytes the CPU backend allocates for these tensors: bf16 and f32 matrices as stored, f16 widened
 * to f32, vectors in f32, int8 experts at one byte plus a float scale per row; plus the largest
 * transient buffer of the load (a merged gate|up pair in float32 while it is quantized).
 */
export function estimateLoadBytes(tensors: Iterable<TensorInfo>, expertsInt8: boolean): number {
  let total = 0, transient = 0;
  for (const t of tensors) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const isMatrix = t.shape.length >= 2;
    const expert = /\.experts\.\d+\./.test(t.name);
    let bytes: number;
    if (expert && expertsInt8) bytes = numel + t.shape[0]! * 4;
    else if (!isMatrix || t.dtype === 'F16' || t.dtype === 'F32') bytes = numel * 4;
    else bytes = numel * 2;
    total += bytes;
    transient = Math.max(transient, 2 * numel * (expertsInt8 && expert ? 4 : t.dtype === 'F16' ? 6 : 2));
  }
  return total + transient;
}

/**
 * Device bytes the CUDA backend allocates for these tensors (bf16 matrices, int8 experts with
 * ExpertsInt8, float32 vectors) plus its state pools: conv and SSM states for every sequence slot,
 * and the bf16 KV cache of `contextLength` positions per slot.
 */
export function estimateDeviceBytes(tensors: Iterable<TensorInfo>, expertsInt8: boolean, pools: { mambaLayers: number; attentionLayers: number;
  dInner: number; dConv: number; dState: number; kvWidth: number; maxSequences: number; contextLength: number }): number {
  let total = 0;
  for (const t of tensors) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const expert = /\.experts\.\d+\./.test(t.name);
    total += t.shape.length < 2 ? numel * 4 : expert && expertsInt8 ? numel + t.shape[0]! * 4 : numel * 2;
  }
  const p = pools;
  total += p.maxSequences * (p.mambaLayers * p.dInner * (p.dConv - 1 + p.dState) * 4 + p.attentionLayers * p.contextLength * p.kvWidth * 2 * 2);
  return total;
}

function readNumber(file: string): number | undefined {
  try {
    const v = fs.readFileSync(file, 'utf8').trim();
    return /^\d+$/.test(v) ? Number(v) : undefined;
  } catch {
    return undefined;
  }
}

/** Memory this process may still allocate: MemAvailable, bounded by a cgroup limit if there is one. */
export function availableMemoryBytes(): number {
  let avail = os.freemem();
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    if (m) avail = Number(m[1]) * 1024;
  } catch {
    // not Linux: os.freemem() it is
  }
  const limit = readNumber('/sys/fs/cgroup/memory.max') ?? readNumber('/sys/fs/cgroup/memory/memory.limit_in_bytes');
  const used = readNumber('/sys/fs/cgroup/memory.current') ?? readNumber('/sys/fs/cgroup/memory/memory.usage_in_bytes');
  if (limit !== undefined && used !== undefined && limit < 2 ** 60) avail = Math.min(avail, Math.max(0, limit - used));
  return avail;
}
