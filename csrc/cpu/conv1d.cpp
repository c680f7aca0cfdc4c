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

void causal_conv1d_silu_back(const float* x, int64_t ldx, int64_t t_len, int64_t channels, const float* w,
                             int64_t width, const float* bias, const float* state, const float* du, int64_t lddu,
                             float* dx, int64_t lddx, float* dstate) {
  const int64_t hist = width - 1;
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (channels + kBlock - 1) / kBlock;
  auto body = [&](int64_t b0, int64_t b1) {
    std::vector<float> ds(size_t((t_len + hist) * kBlock));  // rows hist.. hold ds[t]; rows before stay 0
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t c0 = b * kBlock, nc = std::min(channels, c0 + kBlock) - c0;
      auto input = [&](int64_t src, int64_t c) { return src < 0 ? state[(c0 + c) * hist + hist + src] : x[src * ldx + c0 + c]; };
      for (int64_t t = 0; t < t_len; ++t) {
        float* d = ds.data() + (t + hist) * kBlock;
        for (int64_t c = 0; c < nc; ++c) {
          // The forward's pre-activation, summed in the forward's order.
          float s = bias ? bias[c0 + c] : 0.f;
          for (int64_t j = 0; j < width; ++j) s += w[(c0 + c) * width + j] * input(t - hist + j, c);
          const float sg = 1.0f / (1.0f + exp_approx(-s));
          d[c] = du[t * lddu + c0 + c] * sg * (1.0f + s * (1.0f - sg));
        }
      }
      // dx[τ] gathers ds[τ + hist - j] over the taps; τ < 0 is the initial state's gradient.
      for (int64_t tau = -hist; tau < t_len; ++tau) {
        if (tau < 0 && !dstate) continue;
        for (int64_t c = 0; c < nc; ++c) {
          float g = 0.f;
          for (int64_t j = 0; j < width; ++j) {
            const int64_t t = tau + hist - j;
            if (t >= 0 && t < t_len) g += w[(c0 + c) * width + j] * ds[size_t((t + hist) * kBlock + c)];
          }
          if (tau >= 0) dx[tau * lddx + c0 + c] = g;
          else dstate[(c0 + c) * hist + hist + tau] = g;
        }
      }
    }
  };
  if (channels * t_len < 4096) body(0, blocks);
  else ThreadPool::instance().parallel_for(blocks, body);
}

}  // namespace jamba::cpu
