/**
 * Mutation fuzzing of the TypeScript parsers that face untrusted files: config.json (parseConfig)
 * and safetensors headers and indexes (readSafetensorsHeader, readCheckpointTensors). No
 * coverage-guided JavaScript fuzzer installs offline, so this is a seeded mutational fuzzer:
 * structural mutations of real configs and headers (fields deleted, retyped, set to edge values)
 * plus byte-level mutations. The contract checked: every input is accepted with its invariants
 * holding, or rejected with the parser's typed error; anything else is a crash, saved under
 * fuzz/crashes/ and replayed by test/fuzz-regressions.test.ts once committed to fuzz/regressions/.
 *
 *   node dist/fuzz/js-fuzz.js [--seconds 30] [--seed N]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../lib/config';
import { CheckpointError, ConfigError } from '../lib/errors';
import { readCheckpointTensors, readSafetensorsHeader } from '../lib/safetensors';
import { LAYOUTS, TINY_RANDOM } from '../test/helpers/paths';

const ROOT = path.resolve(__dirname, '..', '..');

class Rand {
  constructor(private s: number) {}
  next(): number {
    this.s = (Math.imul(this.s, 1103515245) + 12345) >>> 0;
    return this.s / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

const EDGE: unknown[] = [0, -1, 1, 2, 3, 0.5, 1e9, 2 ** 31, 2 ** 53, -(2 ** 53), Number.MAX_VALUE, '', 'auto', 'x', true, false, null, [], {}, [1, 2], '16'];

function mutateValue(r: Rand, v: unknown, depth = 0): unknown {
  if (depth < 3 && v && typeof v === 'object') {
    const o = (Array.isArray(v) ? [...v] : { ...(v as Record<string, unknown>) }) as Record<string, unknown>;
    const keys = Object.keys(o);
    for (let i = 0, n = 1 + r.int(3); i < n && keys.length; i++) {
      const k = r.pick(keys);
      switch (r.int(4)) {
        case 0: delete o[k]; break;
        case 1: o[k] = r.pick(EDGE); break;
        case 2: o[k] = mutateValue(r, o[k], depth + 1); break;
        default: o[`${k}_${r.int(9)}`] = r.pick(EDGE);
      }
    }
    return o;
  }
  if (typeof v === 'number') return r.pick([v + 1, v - 1, v * 2, -v, 0, v / 3, r.pick(EDGE)]);
  return r.pick(EDGE);
}

function mutateBytes(r: Rand, b: Buffer): Buffer {
  const out = Buffer.from(b);
  for (let i = 0, n = 1 + r.int(8); i < n && out.length; i++) {
    const at = r.int(out.length);
    switch (r.int(3)) {
      case 0: out[at] = r.int(256); break;
      case 1: out[at] = r.pick([0x22, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x30, 0x39, 0x2d]); break;
      default: return Buffer.concat([out.subarray(0, at), out.subarray(at + 1 + r.int(4))]);
    }
  }
  return out;
}

function configSeeds(): unknown[] {
  const files = [path.join(TINY_RANDOM, 'config.json'), path.join(ROOT, 'models', 'jamba-tiny-shakespeare', 'config.json')];
  const seeds: unknown[] = files.filter((f) => fs.existsSync(f)).map((f) => JSON.parse(fs.readFileSync(f, 'utf8')) as unknown);
  const layouts = LAYOUTS;
  if (fs.existsSync(layouts)) for (const f of fs.readdirSync(layouts)) seeds.push((JSON.parse(fs.readFileSync(path.join(layouts, f), 'utf8')) as { config: unknown }).config);
  return seeds.length ? seeds : [{}];
}

/** One config input: must parse with its invariants, or throw ConfigError. */
export function checkConfig(input: unknown): void {
  try {
    const c = parseConfig(input);
    const ok = c.layerTypes.length === c.numHiddenLayers && c.hiddenSize % c.numAttentionHeads === 0 &&
      c.numAttentionHeads % c.numKeyValueHeads === 0 && c.attnLayerOffset < c.attnLayerPeriod &&
      c.expertLayerOffset < c.expertLayerPeriod && c.numExpertsPerTok <= c.numExperts && c.mambaDtRank >= 1 &&
      Number.isInteger(c.headDim) && c.eosTokenIds.every((e) => e < c.vocabSize);
    if (!ok) throw new Error(`accepted a config that breaks an invariant: ${JSON.stringify(input)}`);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
  }
}

/** One safetensors file (bytes): must parse within its bounds, or throw CheckpointError. */
export function checkHeader(bytes: Buffer, dir: string): void {
  const file = path.join(dir, 'model.safetensors');
  fs.writeFileSync(file, bytes);
  try {
    const h = readSafetensorsHeader(file);
    for (const t of h.tensors.values())
      if (t.offset + t.nbytes > bytes.length || t.offset < 8) throw new Error(`accepted an out-of-bounds tensor ${t.name}`);
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
  }
}

/** One index file (JSON text) over a real shard: readCheckpointTensors must stay inside `dir`. */
export function checkIndex(text: string, dir: string): void {
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), text);
  try {
    for (const t of readCheckpointTensors(dir).values())
      if (path.relative(dir, t.file).startsWith('..')) throw new Error(`read outside the folder: ${t.file}`);
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
  }
}

function main(): void {
  const args = process.argv.slice(2);
  const seconds = Number(args[args.indexOf('--seconds') + 1] ?? 30) || 30;
  const r = new Rand(Number(args[args.indexOf('--seed') + 1] ?? 1) || 1);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-jsfuzz-'));
  const crashes = path.join(ROOT, 'fuzz', 'crashes');
  const configs = configSeeds();
  const headers = fs.readdirSync(path.join(ROOT, 'fuzz', 'corpus', 'header')).map((f) => fs.readFileSync(path.join(ROOT, 'fuzz', 'corpus', 'header', f)));
  const shardDir = TINY_RANDOM;
  const indexSeed = fs.existsSync(path.join(shardDir, 'model.safetensors.index.json')) ? fs.readFileSync(path.join(shardDir, 'model.safetensors.index.json'), 'utf8') : '{"weight_map":{}}';
  for (const f of fs.existsSync(shardDir) ? fs.readdirSync(shardDir).filter((x) => x.startsWith('model-')) : []) fs.copyFileSync(path.join(shardDir, f), path.join(work, f));
  const counts = { config: 0, header: 0, index: 0 };
  const end = Date.now() + seconds * 1000;
  try {
    while (Date.now() < end) {
      const which = r.int(3);
      let input: Buffer | string | unknown;
      try {
        if (which === 0) {
          input = r.int(4) === 0 ? mutateBytes(r, Buffer.from(JSON.stringify(r.pick(configs)))).toString('utf8') : mutateValue(r, r.pick(configs));
          let value = input;
          if (typeof input === 'string') {
            try { value = JSON.parse(input); } catch { value = undefined; }
          }
          if (value !== undefined) checkConfig(value);
          counts.config++;
        } else if (which === 1) {
          const seed = r.pick(headers);
          const n = Number(seed.readBigUInt64LE(0));
          if (r.int(2)) {
            const h = JSON.parse(seed.subarray(8, 8 + n).toString()) as unknown;
            const hb = Buffer.from(JSON.stringify(mutateValue(r, h)));
            const len = Buffer.alloc(8);
            len.writeBigUInt64LE(BigInt(hb.length));
            input = Buffer.concat([len, hb, seed.subarray(8 + n)]);
          } else {
            input = mutateBytes(r, seed);
          }
          checkHeader(input as Buffer, work);
          counts.header++;
        } else {
          const idx = JSON.parse(indexSeed) as unknown;
          input = r.int(3) === 0 ? mutateBytes(r, Buffer.from(indexSeed)).toString('utf8') : JSON.stringify(mutateValue(r, idx));
          checkIndex(input as string, work);
          counts.index++;
        }
      } catch (e) {
        fs.mkdirSync(crashes, { recursive: true });
        const name = `${['config', 'header', 'index'][which]}-${Date.now()}`;
        fs.writeFileSync(path.join(crashes, name), Buffer.isBuffer(input) ? input : typeof input === 'string' ? input : JSON.stringify(input));
        console.error(`crash (${name}): ${(e as Error).stack ?? String(e)}`);
        process.exitCode = 1;
        return;
      }
    }
    console.log(`js-fuzz: ${counts.config} configs, ${counts.header} headers, ${counts.index} indexes in ${seconds} s, no crash`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) main();
