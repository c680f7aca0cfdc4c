#include "cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/thread_pool.h"

namespace jamba::cpu {

namespace {
constexpr int64_t kChunk = 64;  // target rows whose logits exist at once
}  // namespace

double cross_entropy_head(const PackedWeight& head, const float* x, int64_t ldx, int64_t rows, const int32_t* ids,
                          const float* weights, float* dx, int64_t lddx, double* row_loss) {
  const int64_t V = head.n;
  std::vector<float> z(size_t(std::min(rows, kChunk) * V));
  std::vector<double> loss(static_cast<size_t>(rows));
  for (int64_t r0 = 0; r0 < rows; r0 += kChunk) {
    const int64_t n = std::min(kChunk, rows - r0);
    gemm(x + r0 * ldx, ldx, n, head, z.data(), V);
    // Each logits row becomes its gradient in place: w·softmax(z) − w·onehot(id).
    ThreadPool::instance().parallel_for(n, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) {
        float* zi = z.data() + i * V;
        const int64_t r = r0 + i;
        float mx = zi[0];
        for (int64_t c = 1; c < V; ++c) mx = std::max(mx, zi[c]);
        double sum = 0;
        for (int64_t c = 0; c < V; ++c) sum += std::exp(double(zi[c]) - mx);
        const double lse = double(mx) + std::log(sum);
        const double w = weights[r];
        const double target = zi[ids[r]];
        loss[size_t(r)] = w * (lse - target);
        for (int64_t c = 0; c < V; ++c) zi[c] = float(w * std::exp(double(zi[c]) - lse));
        zi[ids[r]] = float(w * (std::exp(target - lse) - 1.0));  // in double: p ≈ 1 would cancel in float
      }
    });
    gemm_dx(z.data(), V, n, head, dx + r0 * lddx, lddx);
  }
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    total += loss[size_t(r)];
    if (row_loss) row_loss[r] = loss[size_t(r)];
  }
  return total;
}

}  // namespace jamba::cpu
