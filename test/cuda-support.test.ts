/**
 * Models outside the CUDA kernels' limits are refused at load, naming the config field, before
 * any weight is uploaded; `device: 'auto'` runs them on the CPU with one log line.
 */
import fs from 'node:fs';
import { JambaError, UnsupportedDeviceError, loadModel } from '../lib';
import { parseConfig } from '../lib/config';
import { cudaUnsupported } from '../lib/cuda-support';
import { CudaLimits, native } from '../lib/native';
import { writeRandomCheckpoint } from './helpers/random-checkpoint';

const LIMITS: CudaLimits = { maxDState: 16, minConv: 2, maxConv: 4, maxHeadDim: 64, maxGroup: 4, maxExperts: 8 };
const SMALL = {
  vocab_size: 1030, hidden_size: 64, intermediate_size: 48, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2,
  attn_layer_period: 2, attn_layer_offset: 1, expert_layer_period: 2, expert_layer_offset: 0, num_experts: 4, num_experts_per_tok: 2,
  mamba_d_state: 16, mamba_d_conv: 4,
};

describe('cudaUnsupported', () => {
  test('a config inside every limit is supported', () => {
    expect(cudaUnsupported(parseConfig(SMALL), LIMITS)).toBeNull();
  });

  test.each([
    ['mamba_d_state', { mamba_d_state: 17 }, /17 states per channel; .* up to 16/],
    ['mamba_d_conv', { mamba_d_conv: 5 }, /5 taps; .* 2 to 4/],
    ['mamba_d_conv', { mamba_d_conv: 1 }, /1 taps; .* 2 to 4/],
    ['num_attention_heads', { num_attention_heads: 2, num_key_value_heads: 1 }, /head_dim \(hidden_size \/ num_attention_heads\) is 32; .* up to 16/],
    ['num_key_value_heads', { num_attention_heads: 16, num_key_value_heads: 2 }, /8 query heads per KV head; .* up to 4/],
    ['num_experts', { num_experts: 9 }, /9 experts; .* up to 8/],
  ])('%s out of bounds is named', (field, edit, message) => {
    const err = cudaUnsupported(parseConfig({ ...SMALL, ...edit }), { ...LIMITS, maxHeadDim: field === 'num_attention_heads' ? 16 : LIMITS.maxHeadDim });
    expect(err).toBeInstanceOf(UnsupportedDeviceError);
    expect(err!.field).toBe(field);
    expect(err!.code).toBe('unsupported_device');
    expect(err!.message).toMatch(message);
  });

  test('limits of layer kinds a model does not have do not apply', () => {
    // All Mamba: the attention period's offset lies past the last layer.
    const allMamba = parseConfig({ ...SMALL, num_hidden_layers: 2, attn_layer_period: 4, attn_layer_offset: 3, num_attention_heads: 16, num_key_value_heads: 1 });
    expect(allMamba.layerTypes).not.toContain('attention');
    expect(cudaUnsupported(allMamba, LIMITS)).toBeNull();
    const allAttention = parseConfig({ ...SMALL, attn_layer_period: 1, attn_layer_offset: 0, mamba_d_state: 64 });
    expect(cudaUnsupported(allAttention, LIMITS)).toBeNull();
    const dense = parseConfig({ ...SMALL, num_experts: 1, num_experts_per_tok: 1 });
    expect(cudaUnsupported({ ...dense, numExperts: 99 }, LIMITS)).toBeNull();
  });
});

describe('loading a model the CUDA kernels cannot run', () => {
  let dir: string;
  beforeAll(() => {
    const maxDState = native().cuda?.limits().maxDState ?? 32;
    dir = writeRandomCheckpoint({ ...SMALL, vocab_size: 1030, mamba_d_state: maxDState + 8 }, { dtype: 'F32', seed: 5 });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test("device 'cuda' refuses it naming the field (or, without a CUDA build, says so)", async () => {
    const err = await loadModel(dir, { device: 'cuda' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedDeviceError);
    if (native().cuda) {
      expect((err as UnsupportedDeviceError).field).toBe('mamba_d_state');
      expect((err as Error).message).toMatch(/^mamba_d_state: \d+ states per channel; the CUDA selective scan supports up to \d+ \(the CPU backend runs it/);
    } else {
      expect((err as JambaError).message).toMatch(/has no CUDA backend/);
    }
  });

  test("device 'auto' runs it on the CPU after one line naming why", async () => {
    const spy = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const model = await loadModel(dir, { device: 'auto' });
      expect(model.inspect().device).toBe('cpu');
      const lines = spy.mock.calls.map((c) => String(c[0])).filter((l) => l.startsWith("jamba: device 'auto'"));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(native().cuda ? /mamba_d_state: .*; using the CPU backend\n$/ : /no CUDA backend.*; using the CPU backend\n$/);
      expect((await model.complete([1, 5, 9], { maxTokens: 3, temperature: 0 })).tokens).toHaveLength(3);
      await model.dispose();
    } finally {
      spy.mockRestore();
    }
  });
});
