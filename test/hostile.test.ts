/**
 * Hostile checkpoints: every case is refused with a typed error naming the file and the problem,
 * without reading past the file or allocating absurd amounts, and the model loaded beside it keeps
 * working.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CheckpointError, ConfigError, InsufficientMemoryError, JambaModel, loadModel } from '../lib';
import { copyModel, editJson } from './helpers/fixture-copy';
import { EMBEDDED, TINY_RANDOM } from './helpers/paths';

let model: JambaModel;
let expected: number[];
const dirs: string[] = [];
beforeAll(async () => {
  model = await loadModel(EMBEDDED);
  expected = (await model.complete('ROMEO:\n', { maxTokens: 8, temperature: 0 })).tokens;
});
afterEach(async () => {
  expect((await model.complete('ROMEO:\n', { maxTokens: 8, temperature: 0 })).tokens).toEqual(expected);
});
afterAll(async () => {
  await model.dispose();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A copy of the embedded model whose model.safetensors is replaced by these bytes. */
function withFile(bytes: Buffer): string {
  const dir = copyModel(EMBEDDED, (f) => f !== 'model.safetensors');
  dirs.push(dir);
  fs.writeFileSync(path.join(dir, 'model.safetensors'), bytes);
  return dir;
}

function file(header: string | object, data: Buffer = Buffer.alloc(0), claimedLength?: number): Buffer {
  const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(claimedLength ?? h.length));
  return Buffer.concat([len, h, data]);
}

async function refused(dir: string, type: new (...a: never[]) => Error, message: RegExp): Promise<void> {
  let err: unknown;
  try {
    await loadModel(dir);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(type);
  expect((err as Error).message).toMatch(message);
}

const t = (dtype: string, shape: number[], begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] });

describe('safetensors headers', () => {
  test('header length larger than the file', () =>
    refused(withFile(file('{}', Buffer.alloc(0), 1 << 30)), CheckpointError, /model\.safetensors: header length 1073741824 runs past the end of the file/));

  test('header length beyond the cap (on a large sparse file)', async () => {
    const dir = withFile(file('{}', Buffer.alloc(0), 200 * 2 ** 20));
    fs.truncateSync(path.join(dir, 'model.safetensors'), 300 * 2 ** 20);  // sparse: no disk used
    await refused(dir, CheckpointError, /header length 209715200 exceeds the 104857600-byte limit/);
  });

  test('malformed JSON', () => refused(withFile(file('{"a": {"dtype": "F32",')), CheckpointError, /header is not valid JSON/));

  test('deeply nested JSON', () =>
    refused(withFile(file(`{"__metadata__": ${'['.repeat(100000)}${']'.repeat(100000)}}`)), CheckpointError, /nests deeper than 16 levels/));

  test('duplicate tensor names', () =>
    refused(withFile(file(`{"w": ${JSON.stringify(t('F32', [1], 0, 4))}, "w": ${JSON.stringify(t('F32', [1], 4, 8))}}`, Buffer.alloc(8))),
      CheckpointError, /tensor w: is declared twice/));

  test('overlapping byte ranges', () =>
    refused(withFile(file({ a: t('F32', [2], 0, 8), b: t('F32', [2], 4, 12) }, Buffer.alloc(12))), CheckpointError, /tensor b: overlaps another tensor/));

  test('a gap between tensors', () =>
    refused(withFile(file({ a: t('F32', [1], 0, 4), b: t('F32', [1], 8, 12) }, Buffer.alloc(12))), CheckpointError, /tensor b: leaves a gap of 4 bytes/));

  test('bytes after the last tensor', () =>
    refused(withFile(file({ a: t('F32', [1], 0, 4) }, Buffer.alloc(10))), CheckpointError, /6 bytes after the last tensor/));

  test('a range past the end of the file', () =>
    refused(withFile(file({ a: t('F32', [4], 0, 16) }, Buffer.alloc(8))), CheckpointError, /tensor a: data ends at byte \d+ but the file has \d+ bytes/));

  test('a range that disagrees with shape × dtype', () =>
    refused(withFile(file({ a: t('BF16', [3], 0, 4) }, Buffer.alloc(4))), CheckpointError, /tensor a: holds 4 bytes but shape \[3\] of BF16 needs 6/));

  test('a shape whose element count overflows 64 bits', () =>
    refused(withFile(file({ a: t('F32', [2 ** 40, 2 ** 40], 0, 4) }, Buffer.alloc(4))), CheckpointError, /tensor a: shape .* has more than 2\^63 elements/));

  test('an unknown dtype', () =>
    refused(withFile(file({ a: t('Q4_K', [1], 0, 4) }, Buffer.alloc(4))), CheckpointError, /tensor a: unknown dtype "Q4_K"/));
});

describe('sharded checkpoints', () => {
  const sharded = () => {
    const d = copyModel(TINY_RANDOM);
    dirs.push(d);
    return d;
  };
  const pointTo = (dir: string, shard: string) => editJson(path.join(dir, 'model.safetensors.index.json'), (j) => {
    const map = j.weight_map as Record<string, string>;
    map[Object.keys(map)[0]!] = shard;
  });

  test('a shard name with ../', async () => {
    const d = sharded();
    pointTo(d, '../model-00001-of-00003.safetensors');
    await refused(d, CheckpointError, /shard name "\.\.\/model-00001-of-00003\.safetensors" is not a file inside the model folder/);
  });

  test('an absolute shard path', async () => {
    const d = sharded();
    pointTo(d, '/etc/passwd');
    await refused(d, CheckpointError, /shard name "\/etc\/passwd" is not a file inside the model folder/);
  });

  test('a shard that is a symbolic link out of the folder', async () => {
    const d = sharded();
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-out-'));
    dirs.push(outside);
    fs.renameSync(path.join(d, 'model-00002-of-00003.safetensors'), path.join(outside, 'x.safetensors'));
    fs.symlinkSync(path.join(outside, 'x.safetensors'), path.join(d, 'model-00002-of-00003.safetensors'));
    await refused(d, CheckpointError, /model-00002-of-00003\.safetensors: resolves outside the model folder/);
  });

  test('config.json as a symbolic link out of the folder', async () => {
    const d = sharded();
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-out-'));
    dirs.push(outside);
    fs.renameSync(path.join(d, 'config.json'), path.join(outside, 'config.json'));
    fs.symlinkSync(path.join(outside, 'config.json'), path.join(d, 'config.json'));
    await refused(d, CheckpointError, /config\.json: resolves outside the model folder/);
  });

  test('an index naming a missing shard', async () => {
    const d = sharded();
    pointTo(d, 'model-00009-of-00009.safetensors');
    await refused(d, CheckpointError, /names shard model-00009-of-00009\.safetensors, which does not exist/);
  });
});

describe('absurd configs', () => {
  const withConfig = (edit: (j: Record<string, unknown>) => void) => {
    const d = copyModel(EMBEDDED);
    dirs.push(d);
    editJson(path.join(d, 'config.json'), edit);
    return d;
  };
  test.each([
    ['zero hidden size', { hidden_size: 0 }, /hidden_size: must be in \[1,/],
    ['negative layer count', { num_hidden_layers: -3 }, /num_hidden_layers: must be in \[1,/],
    ['a billion experts', { num_experts: 1e9 }, /num_experts: must be in \[1, 4096\]/],
    ['vocab smaller than the EOS id', { vocab_size: 2 }, /eos_token_id\[0\]: 2 is not below vocab_size 2/],
    ['vocab smaller than the BOS id', { vocab_size: 1 }, /bos_token_id: 1 is not below vocab_size 1/],
    ['a fractional head count', { num_attention_heads: 2.5 }, /num_attention_heads: must be an integer/],
  ])('%s', (_n, change, message) => refused(withConfig((j) => Object.assign(j, change)), ConfigError, message));

  test('a model that would not fit in memory is refused before anything is allocated', async () => {
    await expect(loadModel(EMBEDDED, { memoryLimitBytes: 2 ** 20 })).rejects.toBeInstanceOf(InsufficientMemoryError);
    await expect(loadModel(EMBEDDED, { memoryLimitBytes: 2 ** 20 })).rejects.toThrow(/needs about 0\.01 GiB of memory but only 0\.00 GiB is available/);
  });

  test('a config whose parameter count alone exceeds the memory available', () =>
    refused(withConfig((j) => Object.assign(j, { hidden_size: 1 << 22, intermediate_size: 1 << 24, num_hidden_layers: 4096, vocab_size: 1 << 22, num_attention_heads: 1, num_key_value_heads: 1 })),
      InsufficientMemoryError, /needs about \d+\.\d+ GiB of memory/));
});
