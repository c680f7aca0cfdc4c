#include "conv1d.h"

#include <algorithm>
#include <vector>

#include "../core/thread_pool.h"
#include "simd.h"

namespace jamba::cpu {

void causal_conv1d_silu(const float* x, int64_t ldx, int64_t t_len, int64_t channels, const float* w, int64_t width,
                        const float* bias, float* state, float* out, int64_t ldo) {
  const int64_t hist = width - 1;
  // Channels are independent; blocks of 64 keep a thread's slice of x rows in cache.
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (channels + kBlock - 1) / kBlock;
  auto body = [&](int64_t b0, int64_t b1) {
    std::vector<float> win(size_t(kBlock * (hist + t_len)));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t c0 = b * kBlock, c1 = std::min(channels, c0 + kBlock), nc = c1 - c0;
      const int64_t span = hist + t_len;
      // Window per channel: [state (hist values) | x (t_len values)], contiguous in time.
      for (int64_t c = 0; c < nc; ++c) {
        float* wc = win.data() + c * span;
        for (int64_t j = 0; j < hist; ++j) wc[j] = state[(c0 + c) * hist + j];
        for (int64_t t = 0; t < t_len; ++t) wc[hist + t] = x[t * ldx + c0 + c];
      }
      for (int64_t t = 0; t < t_len; ++t)
        for (int64_t c = 0; c < nc; ++c) {
          const float* wc = win.data() + c * span + t;
          const float* wk = w + (c0 + c) * width;
          float acc = bias ? bias[c0 + c] : 0.f;
          for (int64_t j = 0; j < width; ++j) acc += wk[j] * wc[j];
          out[t * ldo + c0 + c] = silu(acc);
        }
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t j = 0; j < hist; ++j) state[(c0 + c) * hist + j] = win[size_t(c * span + t_len + j)];
    }
  };
  if (channels * t_len < 4096) body(0, blocks);
  else ThreadPool::instance().parallel_for(blocks, body);
}

}  // namespace jamba::cpu
