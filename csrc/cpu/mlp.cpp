#include "mlp.h"

#include "simd.h"

namespace jamba::cpu {

void silu_mul(const float* gu, int64_t rows, int64_t inner, float* act) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = gu + r * 2 * inner;
    const float* u = g + inner;
    float* a = act + r * inner;
    for (int64_t i = 0; i < inner; ++i) a[i] = silu(g[i]) * u[i];
  }
}

void gated_mlp(const GatedMlp& mlp, const float* x, int64_t rows, float* out, float* scratch) {
  const int64_t inner = mlp.inner();
  float* gu = scratch;
  float* act = scratch + rows * 2 * inner;
  const int64_t hidden = mlp.gate_up.k;
  gemm(x, hidden, rows, mlp.gate_up, gu, 2 * inner);
  silu_mul(gu, rows, inner, act);
  gemm(act, inner, rows, mlp.down, out, mlp.down.n);
}

}  // namespace jamba::cpu
