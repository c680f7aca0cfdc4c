/**
 * Bad input of every kind gives a typed error naming what is wrong, and leaves the process and
 * already loaded models working.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  AbortError, CheckpointError, ConfigError, DisposedError, InvalidArgumentError, JambaModel, TokenizerError, loadModel,
} from '../lib';
import { copyModel, editJson } from './helpers/fixture-copy';
import { TINY_RANDOM } from './helpers/paths';
import { maxAbsDiff } from './helpers/reference-model';
import { readTensor, writeSafetensors } from './helpers/st-io';

const REF = path.join(TINY_RANDOM, 'reference.safetensors');
const ids = Array.from(readTensor(REF, 'seq1.input_ids').data);
const refLogits = readTensor(REF, 'seq1.logits').data;
let model: JambaModel;
const dirs: string[] = [];
const fresh = () => {
  const d = copyModel(TINY_RANDOM);
  dirs.push(d);
  return d;
};

beforeAll(async () => {
  model = await loadModel(TINY_RANDOM);
});
afterAll(async () => {
  await model.dispose();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});
afterEach(async () => {
  // Whatever the test threw, the loaded model still gives the reference logits.
  expect(maxAbsDiff(await model.logits(ids), refLogits)).toBeLessThanOrEqual(1e-4);
});

async function loadError(dir: string): Promise<Error> {
  try {
    await loadModel(dir);
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected loadModel to fail');
}

const SHARD1 = 'model-00001-of-00003.safetensors';
const shardTensors = (file: string) => {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  return { buf, n, header: JSON.parse(buf.subarray(8, 8 + n).toString()) as Record<string, { dtype: string; shape: number[]; data_offsets: number[] }> };
};
const rewriteHeader = (file: string, edit: (h: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => void) => {
  const { buf, n, header } = shardTensors(file);
  edit(header);
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(file, Buffer.concat([len, h, buf.subarray(8 + n)]));
};
const firstTensor = (file: string) => Object.keys(shardTensors(file).header).find((k) => k !== '__metadata__')!;

describe('checkpoints', () => {
  test('truncated shard: names the file and the tensor', async () => {
    const dir = fresh();
    const f = path.join(dir, 'model-00003-of-00003.safetensors');
    fs.truncateSync(f, fs.statSync(f).size - 100);
    const e = await loadError(dir);
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.message).toContain('model-00003-of-00003.safetensors');
    expect(e.message).toMatch(/tensor model\.\S+: data ends at byte \d+ but the file has \d+ bytes/);
  });

  test('header length past the end of the file', async () => {
    const dir = fresh();
    const f = path.join(dir, SHARD1);
    const b = fs.readFileSync(f);
    b.writeBigUInt64LE(BigInt(b.length * 2), 0);
    fs.writeFileSync(f, b);
    const e = await loadError(dir);
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.message).toMatch(/model-00001-of-00003\.safetensors: header length \d+ runs past the end/);
  });

  test('corrupt header JSON', async () => {
    const dir = fresh();
    const f = path.join(dir, SHARD1);
    const b = fs.readFileSync(f);
    b.write('{{{{', 8);
    fs.writeFileSync(f, b);
    expect((await loadError(dir)).message).toMatch(/model-00001-of-00003\.safetensors: header is not valid JSON/);
  });

  test('a file shorter than 8 bytes', async () => {
    const dir = fresh();
    fs.writeFileSync(path.join(dir, SHARD1), Buffer.from([1, 2, 3]));
    expect((await loadError(dir)).message).toMatch(/too short for a safetensors header/);
  });

  test('wrong shape: names the tensor and both shapes', async () => {
    const dir = fresh();
    const f = path.join(dir, SHARD1);
    let victim = '';
    rewriteHeader(f, (h) => {
      victim = Object.keys(h).find((k) => k.endsWith('in_proj.weight'))!;
      const [a, b] = h[victim]!.shape as [number, number];
      h[victim]!.shape = [b, a];
    });
    const e = await loadError(dir);
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.message).toContain(`tensor ${victim}: has shape [64,256], the config implies [256,64]`);
  });

  test('byte size that disagrees with shape × dtype', async () => {
    const dir = fresh();
    const f = path.join(dir, SHARD1);
    let victim = '';
    rewriteHeader(f, (h) => {
      victim = firstTensor(f);
      h[victim]!.dtype = 'F32';
    });
    expect((await loadError(dir)).message).toMatch(new RegExp(`tensor ${victim.replace(/\./g, '\\.')}: holds \\d+ bytes but shape`));
  });

  test('unsupported dtype for a weight', async () => {
    const dir = fresh();
    const f = path.join(dir, SHARD1);
    let victim = '';
    rewriteHeader(f, (h) => {
      victim = Object.keys(h).find((k) => k.endsWith('.D'))!;
      h[victim]!.dtype = 'I16';
    });
    const e = await loadError(dir);
    expect(e.message).toContain(`tensor ${victim}: has dtype I16; checkpoints must be F32, BF16 or F16`);
  });

  test('overlapping tensors', async () => {
    const dir = fresh();
    const f = path.join(dir, SHARD1);
    rewriteHeader(f, (h) => {
      const names = Object.keys(h).filter((k) => k !== '__metadata__' && h[k]!.shape.length === 1 && h[k]!.dtype === 'BF16');
      const [a, b] = [h[names[0]!]!, h[names[1]!]!];
      if (a.shape[0] === b.shape[0]) b.data_offsets = [...a.data_offsets];
      else throw new Error('test setup: pick two equal vectors');
    });
    expect((await loadError(dir)).message).toMatch(/overlaps another tensor/);
  });

  test('missing tensor, and a tensor that does not belong', async () => {
    const dir = fresh();
    editJson(path.join(dir, 'model.safetensors.index.json'), (j) => {
      delete (j.weight_map as Record<string, string>)['model.layers.3.mamba.D'];
    });
    let e = await loadError(dir);
    expect(e.message).toMatch(/tensor model\.layers\.3\.mamba\.D: is (missing from the checkpoint|in the shard but not in the index)/);

    const dir2 = fresh();
    const extra = path.join(dir2, 'model-00004-of-00004.safetensors');
    writeSafetensors(extra, [{ name: 'model.layers.9.mamba.D', shape: [2], data: [1, 2], dtype: 'F32' }]);
    editJson(path.join(dir2, 'model.safetensors.index.json'), (j) => {
      (j.weight_map as Record<string, string>)['model.layers.9.mamba.D'] = 'model-00004-of-00004.safetensors';
    });
    e = await loadError(dir2);
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.message).toContain('tensor model.layers.9.mamba.D: is not part of a Jamba checkpoint with this config');
  });

  test('an index naming a missing shard or a path outside the folder', async () => {
    const dir = fresh();
    fs.rmSync(path.join(dir, 'model-00002-of-00003.safetensors'));
    expect((await loadError(dir)).message).toMatch(/names shard model-00002-of-00003\.safetensors, which does not exist/);
    const dir2 = fresh();
    editJson(path.join(dir2, 'model.safetensors.index.json'), (j) => {
      (j.weight_map as Record<string, string>)['model.layers.0.mamba.D'] = '../elsewhere.safetensors';
    });
    expect((await loadError(dir2)).message).toMatch(/is not a file inside the model folder/);
  });

  test('no weights at all', async () => {
    const dir = copyModel(TINY_RANDOM, (f) => f.endsWith('.json') && !f.startsWith('model'));
    dirs.push(dir);
    expect(await loadError(dir)).toBeInstanceOf(CheckpointError);
  });
});

describe('config and tokenizer', () => {
  test('invalid config values name the field', async () => {
    const dir = fresh();
    editJson(path.join(dir, 'config.json'), (j) => { j.attn_layer_offset = 4; });
    const e = await loadError(dir);
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain('attn_layer_offset');
    const dir2 = fresh();
    fs.writeFileSync(path.join(dir2, 'config.json'), '{ not json');
    expect(await loadError(dir2)).toBeInstanceOf(ConfigError);
  });

  test('a config that disagrees with the weights names the tensor', async () => {
    const dir = fresh();
    editJson(path.join(dir, 'config.json'), (j) => { j.mamba_d_state = 8; });
    expect((await loadError(dir)).message).toMatch(/tensor model\.layers\.0\.mamba\.x_proj\.weight: has shape \[40,128\], the config implies \[24,128\]/);
  });

  test('missing tokenizer.json', async () => {
    const dir = fresh();
    fs.rmSync(path.join(dir, 'tokenizer.json'));
    expect(await loadError(dir)).toBeInstanceOf(TokenizerError);
  });

  test('not a folder', async () => {
    await expect(loadModel('/nonexistent/model')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(loadModel(TINY_RANDOM, { device: 'tpu' as 'cpu' })).rejects.toThrow(/device must be/);
  });
});

describe('calls', () => {
  test.each([
    ['id past the vocabulary', [1, 1024]],
    ['negative id', [1, -3]],
    ['fractional id', [1, 2.5]],
    ['not a number', [1, 'x' as unknown as number]],
  ])('logits: %s', async (_n, bad) => {
    await expect(model.logits(bad)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(model.logits(bad)).rejects.toThrow(/ids\[1\]/);
  });

  test('empty input', async () => {
    await expect(model.logits([])).rejects.toThrow(/ids is empty/);
    await expect(model.complete([], { maxTokens: 2 })).rejects.toThrow(/empty/);
    const seq = model.createSequence();
    await expect(seq.evaluate([])).rejects.toThrow(/empty/);
    seq.dispose();
  });

  test('out-of-range generation options', async () => {
    for (const opts of [{ temperature: -1 }, { topP: 0 }, { maxTokens: -1 }, { topK: 1.5 }, { minP: 2 }, { stop: [''] }, { seed: 0.5 }, { stopTokenIds: [5000] }])
      await expect(model.complete([1, 5], opts)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  test('an already aborted signal', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(model.logits(ids, { signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
  });

  test('calls on one sequence made at once run in order; snapshot waits for none of them', async () => {
    const seq = model.createSequence();
    const a = seq.evaluate(ids.slice(0, 4));
    const b = seq.evaluate(ids.slice(4), { logits: 'all' });
    expect(() => seq.snapshot()).toThrow(/pending/);
    await a;
    expect(maxAbsDiff(await b, refLogits.subarray(4 * 1024))).toBeLessThanOrEqual(1e-4);
    expect(seq.position).toBe(ids.length);
    seq.dispose();
    expect(() => seq.position).toThrow(DisposedError);
  });

  test('use after dispose', async () => {
    const m = await loadModel(TINY_RANDOM);
    const seq = m.createSequence();
    await m.dispose();
    await m.dispose();  // idempotent
    await expect(m.logits(ids)).rejects.toBeInstanceOf(DisposedError);
    await expect(seq.evaluate(ids)).rejects.toBeInstanceOf(DisposedError);
    expect(() => m.createSequence()).toThrow(DisposedError);
    expect(() => m.inspect()).toThrow(DisposedError);
  });
});
