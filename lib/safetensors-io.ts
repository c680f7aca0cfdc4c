/**
 * Small float tensors to and from safetensors files: trained prompts, generators and connectors
 * (PEFT's adapter files among them), and optimizer state. Checkpoints of the model itself are
 * read by the native loader, not here.
 */
import fs from 'node:fs';
import { CheckpointError } from './errors';
import { readSafetensorsHeader } from './safetensors';

export interface FloatTensor {
  shape: number[];
  /** Float32 values (F32, F16 and BF16 on disk), or float64 ones (F64, written and read back exactly). */
  data: Float32Array | Float64Array;
}

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Every tensor of a file (F32, F16 and BF16 as float32; F64 as float64), with the file's metadata. */
export function readFloatTensors(file: string): { tensors: Map<string, FloatTensor>; metadata: Record<string, string> } {
  const header = readSafetensorsHeader(file);
  const out = new Map<string, FloatTensor>();
  const buf = fs.readFileSync(file);
  for (const [name, t] of header.tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const data = t.dtype === 'F64' ? new Float64Array(n) : new Float32Array(n);
    for (let i = 0; i < n; i++) {
      switch (t.dtype) {
        case 'F32': data[i] = buf.readFloatLE(t.offset + 4 * i); break;
        case 'F64': data[i] = buf.readDoubleLE(t.offset + 8 * i); break;
        case 'F16': data[i] = f16ToF32(buf.readUInt16LE(t.offset + 2 * i)); break;
        case 'BF16':
          u32[0] = buf.readUInt16LE(t.offset + 2 * i) << 16;
          data[i] = f32[0]!;
          break;
        default: throw new CheckpointError(`holds ${t.dtype} values; a float tensor was expected`, { file, tensor: name });
      }
    }
    out.set(name, { shape: t.shape, data });
  }
  return { tensors: out, metadata: header.metadata };
}

/** Writes float tensors (F32 or F64 as given) and string metadata as a safetensors file, atomically (a temporary file, then a rename). */
export function writeFloatTensors(file: string, tensors: Record<string, FloatTensor>, metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', ...metadata } };
  const parts: Buffer[] = [];
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new CheckpointError(`shape ${JSON.stringify(t.shape)} does not hold ${t.data.length} values`, { file, tensor: name });
    const b = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: t.data instanceof Float64Array ? 'F64' : 'F32', shape: t.shape, data_offsets: [off, off + b.length] };
    off += b.length;
    parts.push(b);
  }
  let h = Buffer.from(JSON.stringify(header));
  h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, Buffer.concat([len, h, ...parts]));
  fs.renameSync(tmp, file);
}
