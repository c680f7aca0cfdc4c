/**
 * State snapshots: a sequence's whole decode state (Mamba conv and SSM states, attention keys and
 * values), the tokens that produced it and the logits after the last of them. Restoring one on
 * any sequence of the same model continues exactly as if those tokens had been evaluated again.
 * A recurrent layer cannot be rolled back like a KV cache; Jamba's state is small enough to keep.
 */
import { InvalidArgumentError } from './errors';
import type { ExportedState } from './native';

const MAGIC = 'JMBSNAP1';

interface Header {
  fingerprint: string;
  position: number;
  tokens: number;
  logits: number;
  layers: Array<[number, number, number, number]>;  // lengths of conv, ssm, k, v
}

export class Snapshot {
  /** @internal */
  constructor(
    /** Identifies the model (config and weights) the state belongs to. */
    readonly fingerprint: string,
    /** The tokens evaluated to reach this state. */
    readonly tokens: Int32Array,
    /** @internal */
    readonly state: ExportedState,
    /** Logits after the last token (empty if not kept). */
    readonly logits: Float32Array,
  ) {}

  get position(): number {
    return this.state.position;
  }

  /** Bytes of state held. */
  get bytes(): number {
    let b = this.tokens.byteLength + this.logits.byteLength;
    for (const l of this.state.layers) b += l.conv.byteLength + l.ssm.byteLength + l.k.byteLength + l.v.byteLength;
    return b;
  }

  /** Serialises to a self-describing Buffer (`Snapshot.fromBuffer` reads it back). */
  toBuffer(): Buffer {
    const header: Header = {
      fingerprint: this.fingerprint, position: this.position, tokens: this.tokens.length, logits: this.logits.length,
      layers: this.state.layers.map((l) => [l.conv.length, l.ssm.length, l.k.length, l.v.length]),
    };
    const h = Buffer.from(JSON.stringify(header));
    const head = Buffer.alloc(MAGIC.length + 4);
    head.write(MAGIC, 0, 'latin1');
    head.writeUInt32LE(h.length, MAGIC.length);
    const parts: Buffer[] = [head, h, Buffer.from(this.tokens.buffer, this.tokens.byteOffset, this.tokens.byteLength),
      Buffer.from(this.logits.buffer, this.logits.byteOffset, this.logits.byteLength)];
    for (const l of this.state.layers)
      for (const a of [l.conv, l.ssm, l.k, l.v]) parts.push(Buffer.from(a.buffer, a.byteOffset, a.byteLength));
    return Buffer.concat(parts);
  }

  /** Parses a buffer from `toBuffer`, checking every length against the buffer's size. */
  static fromBuffer(buf: Uint8Array): Snapshot {
    const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    const bad = (why: string) => new InvalidArgumentError(`not a jamba-node snapshot: ${why}`);
    if (b.length < MAGIC.length + 4 || b.toString('latin1', 0, MAGIC.length) !== MAGIC) throw bad('wrong magic');
    const hlen = b.readUInt32LE(MAGIC.length);
    let off = MAGIC.length + 4;
    if (hlen > b.length - off) throw bad('header runs past the end');
    let header: Header;
    try {
      header = JSON.parse(b.toString('utf8', off, off + hlen)) as Header;
    } catch {
      throw bad('header is not JSON');
    }
    off += hlen;
    const count = (v: unknown) => {
      if (!Number.isSafeInteger(v) || (v as number) < 0) throw bad('a length is not a non-negative integer');
      return v as number;
    };
    if (typeof header.fingerprint !== 'string' || !Array.isArray(header.layers)) throw bad('header fields missing');
    const take = <T>(n: number, size: number, make: (ab: ArrayBuffer) => T): T => {
      if (n * size > b.length - off) throw bad('data runs past the end');
      const copy = new ArrayBuffer(n * size);
      new Uint8Array(copy).set(b.subarray(off, off + n * size));
      off += n * size;
      return make(copy);
    };
    const tokens = take(count(header.tokens), 4, (ab) => new Int32Array(ab));
    const logits = take(count(header.logits), 4, (ab) => new Float32Array(ab));
    const layers = header.layers.map((lens) => {
      if (!Array.isArray(lens) || lens.length !== 4) throw bad('a layer entry is malformed');
      const [conv, ssm, k, v] = lens.map((n) => take(count(n), 4, (ab) => new Float32Array(ab))) as [Float32Array, Float32Array, Float32Array, Float32Array];
      return { conv, ssm, k, v };
    });
    if (off !== b.length) throw bad('trailing bytes');
    return new Snapshot(header.fingerprint, tokens, { position: count(header.position), layers }, logits);
  }
}
