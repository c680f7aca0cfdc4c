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

void gated_mlp_back(const GatedMlp& mlp, const float* x, int64_t rows, const float* dy, float* dx, float* scratch, float* y) {
  const int64_t inner = mlp.inner(), hidden = mlp.gate_up.k;
  float* gu = scratch;
  float* da = scratch + rows * 2 * inner;
  gemm(x, hidden, rows, mlp.gate_up, gu, 2 * inner);
  if (y) {
    silu_mul(gu, rows, inner, da);
    gemm(da, inner, rows, mlp.down, y, mlp.down.n);
  }
  gemm_dx(dy, mlp.down.n, rows, mlp.down, da, inner);
  for (int64_t r = 0; r < rows; ++r) {
    float* g = gu + r * 2 * inner;
    float* u = g + inner;
    const float* d = da + r * inner;
    for (int64_t i = 0; i < inner; ++i) {
      const float sg = 1.0f / (1.0f + exp_approx(-g[i]));
      const float dg = d[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
      u[i] = d[i] * g[i] * sg;
      g[i] = dg;
    }
  }
  gemm_dx(gu, 2 * inner, rows, mlp.gate_up, dx, hidden);
}

}  // namespace jamba::cpu
