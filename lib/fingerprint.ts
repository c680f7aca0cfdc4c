/**
 * A model's identity for snapshots: SHA-256 over the config, every tensor's name, dtype and shape,
 * and the first bytes of every tensor's data. Cheap (no full read) and different for any other
 * checkpoint in practice, so a state is never restored into a model it does not belong to.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import type { JambaConfig } from './config';
import type { TensorInfo } from './safetensors';

const SAMPLE = 64;

export function modelFingerprint(config: JambaConfig, tensors: Map<string, TensorInfo>): string {
  const h = crypto.createHash('sha256');
  h.update(JSON.stringify(config));
  const fds = new Map<string, number>();
  const buf = Buffer.alloc(SAMPLE);
  try {
    for (const t of [...tensors.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      h.update(`${t.name}|${t.dtype}|${t.shape.join(',')}|`);
      let fd = fds.get(t.file);
      if (fd === undefined) {
        fd = fs.openSync(t.file, 'r');
        fds.set(t.file, fd);
      }
      const n = fs.readSync(fd, buf, 0, Math.min(SAMPLE, t.nbytes), t.offset);
      h.update(buf.subarray(0, n));
    }
  } finally {
    for (const fd of fds.values()) fs.closeSync(fd);
  }
  return h.digest('hex');
}
