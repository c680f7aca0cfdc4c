/** Device selection: 'cuda' refuses with the reason, 'auto' falls back to the CPU with one log line. */
import { JambaError, loadModel } from '../lib';
import { native } from '../lib/native';
import { EMBEDDED } from './helpers/paths';

// These run where there is no usable GPU (CI); on a GPU host, test/gpu.test.ts covers 'cuda'.
const gpu = (() => {
  try {
    native().cuda?.info();
    return native().cuda !== undefined;
  } catch {
    return false;
  }
})();
const noGpu = gpu ? test.skip : test;

noGpu("device 'cuda' without a usable CUDA path throws unsupported_device with the reason", async () => {
  const err = await loadModel(EMBEDDED, { device: 'cuda' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(JambaError);
  expect((err as JambaError).code).toBe('unsupported_device');
  const reason = native().cuda ? /no usable CUDA device/ : /built without CUDA/;
  expect((err as Error).message).toMatch(reason);
});

noGpu("device 'auto' falls back to the CPU with one log line", async () => {
  const spy = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    const model = await loadModel(EMBEDDED, { device: 'auto' });
    expect(model.inspect().device).toBe('cpu');
    const lines = spy.mock.calls.map((c) => String(c[0])).filter((l) => l.startsWith("jamba: device 'auto'"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/using the CPU backend\n$/);
    await model.dispose();
  } finally {
    spy.mockRestore();
  }
});

test('an unknown device is an invalid argument', async () => {
  await expect(loadModel(EMBEDDED, { device: 'tpu' as never })).rejects.toThrow(/device must be 'cpu', 'auto' or 'cuda'/);
});
