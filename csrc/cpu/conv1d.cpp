#include "conv1d.h"

#include <algorithm>
#include <vector>

#include "../core/thread_pool.h"
#include "simd.h"

namespace jamba::cpu {

void causal_conv1d_silu(const float* x, int64_t ldx, int64_t t_len, int64_t channels, const float* w, int64_t width,
                        const float* bias, float* state, float* out, int64_t ldo) {
  const int64_t hist = width - 1;
  // Blocks of channels; inside a block every loop runs across channels, so it vectorises.
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (channels + kBlock - 1) / kBlock;
  auto body = [&](int64_t b0, int64_t b1) {
    std::vector<float> wt(size_t(width * kBlock)), prev(size_t(std::max<int64_t>(hist, 1) * kBlock));
    alignas(64) float acc[kBlock];
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t c0 = b * kBlock, nc = std::min(channels, c0 + kBlock) - c0;
      for (int64_t j = 0; j < width; ++j)
        for (int64_t c = 0; c < nc; ++c) wt[size_t(j * kBlock + c)] = w[(c0 + c) * width + j];
      for (int64_t j = 0; j < hist; ++j)
        for (int64_t c = 0; c < nc; ++c) prev[size_t(j * kBlock + c)] = state[(c0 + c) * hist + j];
      for (int64_t t = 0; t < t_len; ++t) {
        for (int64_t c = 0; c < nc; ++c) acc[c] = bias ? bias[c0 + c] : 0.f;
        for (int64_t j = 0; j < width; ++j) {
          const int64_t src = t - hist + j;  // < 0: from the carried state
          const float* row = src < 0 ? prev.data() + (hist + src) * kBlock : x + src * ldx + c0;
          const float* wj = wt.data() + j * kBlock;
          for (int64_t c = 0; c < nc; ++c) acc[c] += wj[c] * row[c];
        }
        float* o = out + t * ldo + c0;
        for (int64_t c = 0; c < nc; ++c) o[c] = silu(acc[c]);
      }
      // New state: the last `hist` inputs, which may reach back into the old state.
      for (int64_t j = 0; j < hist; ++j) {
        const int64_t src = t_len - hist + j;
        for (int64_t c = 0; c < nc; ++c)
          state[(c0 + c) * hist + j] = src < 0 ? prev[size_t((hist + src) * kBlock + c)] : x[src * ldx + c0 + c];
      }
    }
  };
  if (channels * t_len < 4096) body(0, blocks);
  else ThreadPool::instance().parallel_for(blocks, body);
}

}  // namespace jamba::cpu
