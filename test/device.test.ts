/**
 * Device selection: 'cuda' refuses with the reason, 'auto' falls back to the CPU with one log line;
 * and the install's build has the CUDA backend wherever a CUDA toolkit is found.
 */
import fs from 'node:fs';
import path from 'node:path';
import { JambaError, NoDeviceError, loadModel } from '../lib';
import { native } from '../lib/native';
import { packageRoot } from '../lib/paths';
import { EMBEDDED } from './helpers/paths';

const { findCudaToolkit } = require('../scripts/cuda-toolkit') as { findCudaToolkit(): { nvcc: string } | null };

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

noGpu("device 'cuda' without a usable GPU: no_device from a CUDA build, unsupported_device (with the install's reason) from a CPU one", async () => {
  const err = await loadModel(EMBEDDED, { device: 'cuda' }).catch((e: unknown) => e);
  if (native().cuda) {
    expect(err).toBeInstanceOf(NoDeviceError);
    expect((err as JambaError).code).toBe('no_device');
    expect((err as Error).message).toMatch(/no usable CUDA device/);
  } else {
    expect((err as JambaError).code).toBe('unsupported_device');
    // The install's reason and what to do, or (for the sanitizer run's own build) which addon.
    expect((err as Error).message).toMatch(process.env.JAMBA_ADDON ? /has no CUDA backend: the addon JAMBA_ADDON names \(.*\) was built without it/
      : /has no CUDA backend: .*npm rebuild jamba-node/);
  }
});

test('npm install built the CUDA backend exactly where a CUDA toolkit is found (unless JAMBA_CUDA=OFF)', () => {
  const record = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'build', 'jamba-build.json'), 'utf8')) as { cuda: boolean; reason?: string };
  const off = ['OFF', '0', 'FALSE', 'NO'].includes((process.env.JAMBA_CUDA ?? '').toUpperCase());
  expect(record.cuda).toBe(findCudaToolkit() !== null && !off);
  if (!record.cuda) expect(record.reason).toEqual(expect.any(String));
  // The sanitizer run loads its own CPU build (JAMBA_ADDON); otherwise the addon is the install's.
  if (!process.env.JAMBA_ADDON) expect(native().backend).toBe(record.cuda ? 'cpu+cuda' : 'cpu');
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
