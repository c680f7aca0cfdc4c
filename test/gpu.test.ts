/**
 * GPU checks. `npm test` skips them with a visible notice; `npm run test:gpu` (JAMBA_TEST_GPU=1)
 * runs them and fails, never skips, where there is no CUDA build or no CUDA device. The checks
 * themselves (each CUDA kernel against the CPU one, test/gpu/checks.ts; the whole model against
 * the references, test/gpu/model-checks.ts; training through it, test/gpu/train-checks.ts) are
 * run by the GPU host's script (bench/gpu.ts) too.
 */
import { native } from '../lib/native';
import { checks } from './gpu/checks';
import { modelChecks } from './gpu/model-checks';
import { trainChecks } from './gpu/train-checks';

const required = process.env.JAMBA_TEST_GPU === '1';

if (!required) {
  test.skip('GPU tests are skipped here: run `npm run test:gpu` on a machine with an NVIDIA GPU', () => undefined);
} else {
  test('a CUDA backend is built and a CUDA device is present', () => {
    const addon = native();
    if (!addon.cuda) throw new Error(`this build of jamba-node has no CUDA backend (backend: ${addon.backend}); install where a CUDA toolkit (nvcc) is found, or see build/jamba-build.json for why it was not built`);
    const info = addon.cuda.info();  // throws NoDeviceError's code where there is no device
    expect(info.totalBytes).toBeGreaterThan(0);
  });
  describe('each CUDA kernel against the CPU backend', () => {
    for (const c of checks) {
      test(c.name, () => {
        const addon = native();
        if (!addon.cuda) throw new Error('no CUDA backend in this build');
        c.run(addon.cuda, addon.ops);
      });
    }
  });
  describe('the whole model on CUDA', () => {
    for (const c of modelChecks) test(c.name, () => c.run(), 600_000);
  });
  describe('training through the model on CUDA', () => {
    for (const c of trainChecks) test(c.name, () => c.run(), 600_000);
  });
}
