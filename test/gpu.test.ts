/**
 * GPU checks. `npm test` skips them with a visible notice; `npm run test:gpu` (JAMBA_TEST_GPU=1)
 * runs them and fails, never skips, where there is no CUDA build or no CUDA device.
 */
import { native } from '../lib/native';

const required = process.env.JAMBA_TEST_GPU === '1';

if (!required) {
  test.skip('GPU tests are skipped here: run `npm run test:gpu` on a machine with an NVIDIA GPU', () => undefined);
} else {
  test('a CUDA backend is built and a CUDA device is present', () => {
    const backend = native().backend;
    if (!backend.includes('cuda'))
      throw new Error(`this build of jamba-node has no CUDA backend (backend: ${backend}); build it with CUDA on a GPU host`);
  });
}
