#include "norm.h"

#include <cmath>

#include "../core/thread_pool.h"

namespace jamba::cpu {

void rmsnorm(const float* x, int64_t ldx, int64_t rows, int64_t cols, const float* weight, float eps, float* out,
             int64_t ldo) {
  auto body = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * ldx;
      float* o = out + r * ldo;
      // Sum of squares in double: the mean of thousands of squares loses bits in float.
      double ss = 0;
      for (int64_t c = 0; c < cols; ++c) ss += double(xr[c]) * xr[c];
      const float inv = float(1.0 / std::sqrt(ss / double(cols) + double(eps)));
      for (int64_t c = 0; c < cols; ++c) o[c] = xr[c] * inv * weight[c];
    }
  };
  if (rows * cols < 16384) body(0, rows);
  else ThreadPool::instance().parallel_for(rows, body);
}

void rmsnorm_back(const float* x, int64_t ldx, int64_t rows, int64_t cols, const float* weight, float eps,
                  const float* dy, int64_t lddy, float* dx, int64_t lddx, bool accumulate) {
  auto body = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * ldx;
      const float* g = dy + r * lddy;
      double ss = 0, dot = 0;
      for (int64_t c = 0; c < cols; ++c) {
        ss += double(xr[c]) * xr[c];
        dot += double(xr[c]) * g[c] * weight[c];
      }
      const double inv = 1.0 / std::sqrt(ss / double(cols) + double(eps));
      const float a = float(inv), b = float(inv * inv * inv * dot / double(cols));
      float* o = dx + r * lddx;
      for (int64_t c = 0; c < cols; ++c) {
        const float v = a * g[c] * weight[c] - b * xr[c];
        o[c] = accumulate ? o[c] + v : v;
      }
    }
  };
  if (rows * cols < 16384) body(0, rows);
  else ThreadPool::instance().parallel_for(rows, body);
}

void add_inplace(float* h, const float* delta, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] += delta[i];
}

}  // namespace jamba::cpu
