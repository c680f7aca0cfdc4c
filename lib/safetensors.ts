/**
 * safetensors: header parsing and validation, single files and sharded checkpoints
 * (`model.safetensors.index.json`). Only headers are read here; tensor bytes are read once, by the
 * native loader, straight into their final packed form.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CheckpointError } from './errors';

export type StDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL' | 'F8_E4M3' | 'F8_E5M2';

const DTYPE_SIZE: Record<StDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

/** The largest header accepted: real ones are a few hundred KB; more means a corrupt or hostile file. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** Deepest JSON nesting accepted in a header (a valid one nests 3 deep). */
export const MAX_HEADER_DEPTH = 16;

/**
 * Checks what JSON.parse cannot: nesting depth (deep nesting is a stack-exhaustion attack) and
 * duplicate top-level keys (JSON.parse silently keeps the last, so a tensor could be declared
 * twice with different ranges). Returns the top-level keys in order.
 */
export function scanHeaderJson(text: string, file: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      if (depth === 1) {
        // A string at depth 1 followed by ':' is a key.
        let j = i + 1;
        while (j < text.length && /\s/.test(text[j]!)) j++;
        if (text[j] === ':') keys.push(JSON.parse(text.slice(start, i + 1)) as string);
      }
    } else if (c === '{' || c === '[') {
      if (++depth > MAX_HEADER_DEPTH) throw new CheckpointError(`header JSON nests deeper than ${MAX_HEADER_DEPTH} levels`, { file });
    } else if (c === '}' || c === ']') {
      depth--;
    }
  }
  const seen = new Set<string>();
  for (const k of keys) {
    if (seen.has(k)) throw new CheckpointError('is declared twice in the header', { file, tensor: k });
    seen.add(k);
  }
  return keys;
}

export interface TensorInfo {
  name: string;
  file: string;
  dtype: StDtype;
  shape: number[];
  /** Absolute byte offset of the first element in `file`. */
  offset: number;
  nbytes: number;
}

export interface SafetensorsFile {
  file: string;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

function readExactly(fd: number, length: number, position: number, file: string): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new CheckpointError(`unexpected end of file after ${position + done} bytes`, { file });
    done += n;
  }
  return buf;
}

/** Parses and validates one .safetensors file's header against the file's size. */
export function readSafetensorsHeader(file: string): SafetensorsFile {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new CheckpointError(`cannot open: ${(e as Error).message}`, { file });
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size < 8) throw new CheckpointError(`file is ${size} bytes, too short for a safetensors header`, { file });
    const headerLen = Number(readExactly(fd, 8, 0, file).readBigUInt64LE(0));
    if (headerLen > size - 8) throw new CheckpointError(`header length ${headerLen} runs past the end of the file (${size} bytes)`, { file });
    if (headerLen > MAX_HEADER_BYTES) throw new CheckpointError(`header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`, { file });
    let header: unknown;
    const text = readExactly(fd, headerLen, 8, file).toString('utf8');
    try {
      header = JSON.parse(text);
    } catch (e) {
      throw new CheckpointError(`header is not valid JSON: ${(e as Error).message}`, { file });
    }
    scanHeaderJson(text, file);
    if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new CheckpointError('header is not a JSON object', { file });
    const dataStart = 8 + headerLen;
    const dataLen = size - dataStart;
    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    const ranges: Array<[number, number, string]> = [];
    for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        metadata = (entry ?? {}) as Record<string, string>;
        continue;
      }
      const where = { file, tensor: name };
      if (typeof entry !== 'object' || entry === null) throw new CheckpointError('entry is not an object', where);
      const { dtype, shape, data_offsets: offsets } = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof dtype !== 'string' || !(dtype in DTYPE_SIZE)) throw new CheckpointError(`unknown dtype ${JSON.stringify(dtype)}`, where);
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
        throw new CheckpointError(`invalid shape ${JSON.stringify(shape)}`, where);
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && d >= 0))
        throw new CheckpointError(`invalid data_offsets ${JSON.stringify(offsets)}`, where);
      let numel = 1n;
      for (const d of shape as number[]) numel *= BigInt(d);
      if (numel >= 1n << 63n) throw new CheckpointError(`shape ${JSON.stringify(shape)} has more than 2^63 elements`, where);
      const expected = numel * BigInt(DTYPE_SIZE[dtype as StDtype]);
      const [begin, end] = offsets as [number, number];
      if (end < begin) throw new CheckpointError(`data_offsets [${begin}, ${end}] are reversed`, where);
      if (BigInt(end - begin) !== expected)
        throw new CheckpointError(`holds ${end - begin} bytes but shape ${JSON.stringify(shape)} of ${dtype} needs ${expected}`, where);
      if (end > dataLen)
        throw new CheckpointError(`data ends at byte ${dataStart + end} but the file has ${size} bytes (truncated?)`, where);
      ranges.push([begin, end, name]);
      tensors.set(name, { name, file, dtype: dtype as StDtype, shape: shape as number[], offset: dataStart + begin, nbytes: end - begin });
    }
    // As the safetensors format requires: the tensors tile the data region exactly, with no
    // overlap, no gap and nothing after the last one.
    ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let end = 0;
    for (const [begin, stop, name] of ranges) {
      if (begin < end) throw new CheckpointError(`overlaps another tensor (bytes ${begin}-${stop}, previous one ends at ${end})`, { file, tensor: name });
      if (begin > end) throw new CheckpointError(`leaves a gap of ${begin - end} bytes before it`, { file, tensor: name });
      end = stop;
    }
    if (end !== dataLen) throw new CheckpointError(`has ${dataLen - end} bytes after the last tensor's data`, { file });
    return { file, tensors, metadata };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Reads every tensor header of a checkpoint folder: `model.safetensors.index.json` with its shards,
 * or a single `model.safetensors` (or the only *.safetensors file that is not a reference).
 */
export function readCheckpointTensors(dir: string): Map<string, TensorInfo> {
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(indexFile)) return readSharded(dir, assertInside(dir, indexFile));
  const single = path.join(dir, 'model.safetensors');
  if (fs.existsSync(single)) return readSafetensorsHeader(assertInside(dir, single)).tensors;
  throw new CheckpointError(`no model.safetensors or model.safetensors.index.json in ${dir}`, { file: dir });
}

/**
 * Resolves `file` (inside `dir` by name) through symbolic links and refuses it when the real file
 * lies outside the real model folder: a downloaded checkpoint must not make the package read
 * arbitrary files.
 */
export function assertInside(dir: string, file: string): string {
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch (e) {
    throw new CheckpointError(`cannot resolve: ${(e as Error).message}`, { file });
  }
  const rel = path.relative(fs.realpathSync(dir), real);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw new CheckpointError('resolves outside the model folder', { file });
  return file;
}

function readSharded(dir: string, indexFile: string): Map<string, TensorInfo> {
  let index: unknown;
  try {
    if (fs.statSync(indexFile).size > MAX_HEADER_BYTES) throw new Error(`larger than ${MAX_HEADER_BYTES} bytes`);
    const text = fs.readFileSync(indexFile, 'utf8');
    scanHeaderJson(text, indexFile);
    index = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`cannot parse: ${(e as Error).message}`, { file: indexFile });
  }
  const weightMap = (index as { weight_map?: unknown }).weight_map;
  if (typeof weightMap !== 'object' || weightMap === null) throw new CheckpointError('has no weight_map object', { file: indexFile });
  const shards = new Map<string, SafetensorsFile>();
  const out = new Map<string, TensorInfo>();
  for (const [name, shardName] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof shardName !== 'string' || shardName === '' || path.isAbsolute(shardName) || shardName.split(/[\\/]/).includes('..'))
      throw new CheckpointError(`shard name ${JSON.stringify(shardName)} is not a file inside the model folder`, { file: indexFile, tensor: name });
    let shard = shards.get(shardName);
    if (!shard) {
      const shardPath = path.join(dir, shardName);
      if (!fs.existsSync(shardPath)) throw new CheckpointError(`names shard ${shardName}, which does not exist`, { file: indexFile, tensor: name });
      shard = readSafetensorsHeader(assertInside(dir, shardPath));
      shards.set(shardName, shard);
    }
    const info = shard.tensors.get(name);
    if (!info) throw new CheckpointError(`is listed in the index but missing from the shard`, { file: shard.file, tensor: name });
    out.set(name, info);
  }
  for (const shard of shards.values())
    for (const name of shard.tensors.keys())
      if (!out.has(name)) throw new CheckpointError('is in the shard but not in the index', { file: shard.file, tensor: name });
  return out;
}

export function dtypeSize(d: StDtype): number {
  return DTYPE_SIZE[d];
}
