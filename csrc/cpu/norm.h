// RMSNorm over the last dimension: y = x / sqrt(mean(x²) + eps) · weight.
#pragma once
#include <cstdint>

namespace jamba::cpu {

// Rows of x with leading dimension ldx; out may alias x. Threaded over rows.
void rmsnorm(const float* x, int64_t ldx, int64_t rows, int64_t cols, const float* weight, float eps,
             float* out, int64_t ldo);

// The backward of rmsnorm with respect to x: with r = (mean(x²) + eps)^-1/2 and g = dy ⊙ weight,
// dx = r·g − (r³ / cols)·x·Σ(x·g). `accumulate` adds to dx (the residual stream's gradient).
void rmsnorm_back(const float* x, int64_t ldx, int64_t rows, int64_t cols, const float* weight, float eps,
                  const float* dy, int64_t lddy, float* dx, int64_t lddx, bool accumulate = false);

// h += delta, elementwise over rows × cols (the residual add).
void add_inplace(float* h, const float* delta, int64_t n);

}  // namespace jamba::cpu
