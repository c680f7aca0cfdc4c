/**
 * One line at the end of `npm test` saying the GPU tests were skipped and how to run them (jest's
 * summary counts a skipped test but does not show its title).
 */
class GpuNoticeReporter {
  onRunComplete() {
    if (process.env.JAMBA_TEST_GPU !== '1')
      process.stderr.write('GPU tests skipped: run `npm run test:gpu` on a machine with an NVIDIA GPU and a CUDA build (it fails, never skips, without them).\n');
  }
}
module.exports = GpuNoticeReporter;
