/** Reading tensor data from and writing whole safetensors files, for tests only. */
import fs from 'node:fs';
import { readSafetensorsHeader } from '../../lib/safetensors';

// One float32 seen as its bits (little-endian, as every supported platform is).
const f32Cell = new Float32Array(1), u32Cell = new Uint32Array(f32Cell.buffer);

export function bf16ToF32(bits: number): number {
  u32Cell[0] = (bits << 16) >>> 0;
  return f32Cell[0]!;
}

/** Round to nearest even, NaN kept NaN (as torch and the native converter do). */
export function f32ToBf16(x: number): number {
  f32Cell[0] = x;
  const u = u32Cell[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

export function f32ToF16(x: number): number {
  // Test data is generated exactly representable; this only needs to encode it.
  const s = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === 0) return s;
  if (a >= 65520) return s | 0x7c00;
  let e = Math.floor(Math.log2(a));
  if (e < -14) {
    const m = Math.round(a / 2 ** -24);
    return s | m;
  }
  let mi = Math.round((a / 2 ** e - 1) * 1024);  // test data is exact in f16, so no tie arises
  if (mi === 1024) { mi = 0; e++; }
  return s | ((e + 15) << 10) | mi;
}

/** A tensor's values as float64, whatever its stored dtype. */
export function readTensor(file: string, name: string): { shape: number[]; data: Float64Array; dtype: string } {
  const info = readSafetensorsHeader(file).tensors.get(name);
  if (!info) throw new Error(`${file}: no tensor ${name}`);
  const buf = Buffer.alloc(info.nbytes);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, buf, 0, info.nbytes, info.offset);
  } finally {
    fs.closeSync(fd);
  }
  const n = info.shape.reduce((a, b) => a * b, 1);
  const data = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    switch (info.dtype) {
      case 'F32': data[i] = buf.readFloatLE(i * 4); break;
      case 'F64': data[i] = buf.readDoubleLE(i * 8); break;
      case 'BF16': data[i] = bf16ToF32(buf.readUInt16LE(i * 2)); break;
      case 'F16': data[i] = f16ToF32(buf.readUInt16LE(i * 2)); break;
      case 'I64': data[i] = Number(buf.readBigInt64LE(i * 8)); break;
      case 'I32': data[i] = buf.readInt32LE(i * 4); break;
      case 'I8': data[i] = buf.readInt8(i); break;
      default: throw new Error(`readTensor: dtype ${info.dtype}`);
    }
  }
  return { shape: info.shape, data, dtype: info.dtype };
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  data: ArrayLike<number>;
  dtype: 'F32' | 'BF16' | 'F16';
}

/** Writes a safetensors file; values are rounded to the dtype. */
export function writeSafetensors(file: string, tensors: TensorToWrite[]): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const parts: Buffer[] = [];
  let off = 0;
  for (const t of tensors) {
    const es = t.dtype === 'F32' ? 4 : 2;
    const b = Buffer.alloc(t.data.length * es);
    for (let i = 0; i < t.data.length; i++) {
      const v = t.data[i]!;
      if (t.dtype === 'F32') b.writeFloatLE(v, i * 4);
      else if (t.dtype === 'BF16') b.writeUInt16LE(f32ToBf16(v), i * 2);
      else b.writeUInt16LE(f32ToF16(v), i * 2);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + b.length] };
    off += b.length;
    parts.push(b);
  }
  let h = Buffer.from(JSON.stringify(header));
  const pad = (8 - (h.length % 8)) % 8;
  h = Buffer.concat([h, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(file, Buffer.concat([len, h, ...parts]));
}
