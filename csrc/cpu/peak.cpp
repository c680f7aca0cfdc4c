#include "peak.h"

#include <atomic>
#include <chrono>
#include <vector>

#include "../core/thread_pool.h"
#include "simd.h"

namespace jamba::cpu {

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

double measure_fma_peak(double seconds) {
  auto& pool = ThreadPool::instance();
  const int threads = pool.size();
  std::vector<double> flops(size_t(threads), 0);
  const double t0 = now();
  pool.parallel_for(threads, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      // 12 independent accumulators hide the FMA latency on two pipes.
      v16f acc[12];
      for (int i = 0; i < 12; ++i) acc[i] = splat(float(i) * 1e-3f);
      const v16f a = splat(0.999999f), c = splat(1e-7f);
      int64_t iters = 0;
      while (now() - t0 < seconds) {
        for (int r = 0; r < 4096; ++r)
          for (int i = 0; i < 12; ++i) acc[i] = acc[i] * a + c;
        iters += 4096;
      }
      float sink = 0;
      for (int i = 0; i < 12; ++i) sink += acc[i][0];
      flops[size_t(t)] = double(iters) * 12 * kLanes * 2 + (sink == 12345.f ? 1 : 0);
    }
  });
  const double elapsed = now() - t0;
  double total = 0;
  for (double f : flops) total += f;
  return total / elapsed / 1e9;
}

double measure_read_bandwidth(double seconds) {
  auto& pool = ThreadPool::instance();
  const int threads = pool.size();
  const size_t n = size_t(256) << 20 >> 2;  // 256 MiB of floats
  std::vector<float> buf(n, 1.0f);
  std::vector<double> bytes(size_t(threads), 0);
  const double t0 = now();
  pool.parallel_for(threads, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const size_t lo = n * size_t(t) / size_t(threads), hi = n * size_t(t + 1) / size_t(threads);
      v16f acc0{}, acc1{}, acc2{}, acc3{};
      double read = 0;
      while (now() - t0 < seconds) {
        for (size_t i = lo; i + 64 <= hi; i += 64) {
          acc0 += load16(&buf[i]); acc1 += load16(&buf[i + 16]);
          acc2 += load16(&buf[i + 32]); acc3 += load16(&buf[i + 48]);
        }
        read += double(hi - lo) * 4;
      }
      bytes[size_t(t)] = read + (hsum(acc0 + acc1 + acc2 + acc3) == -1.f ? 1 : 0);
    }
  });
  const double elapsed = now() - t0;
  double total = 0;
  for (double b : bytes) total += b;
  return total / elapsed / 1e9;
}

}  // namespace jamba::cpu
