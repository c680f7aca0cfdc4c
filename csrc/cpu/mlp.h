// The SiLU-gated MLP of Jamba's feed-forward (dense layers and every expert):
// down( silu(gate(x)) * up(x) ), with gate and up packed as one [2I, H] product.
#pragma once
#include <cstdint>
#include "gemm.h"

namespace jamba::cpu {

struct GatedMlp {
  PackedWeight gate_up;  // rows [0, I) gate, [I, 2I) up
  PackedWeight down;     // [H, I]
  int64_t inner() const { return down.k; }
};

// act[r, i] = silu(gu[r, i]) * gu[r, I + i]
void silu_mul(const float* gu, int64_t rows, int64_t inner, float* act);

// out[rows, H] = mlp(x[rows, H]); `scratch` holds rows × 3I floats.
void gated_mlp(const GatedMlp& mlp, const float* x, int64_t rows, float* out, float* scratch);

// The backward with respect to x, from dy = ∂L/∂out (weights frozen), recomputing gate and up:
// da = dy·W_down, dg = da·u·silu'(g), du = da·silu(g), dx = [dg | du]·W_gate|up. `y`, when not
// null, receives the recomputed output mlp(x) (the MoE backward needs it). `scratch` as above.
void gated_mlp_back(const GatedMlp& mlp, const float* x, int64_t rows, const float* dy, float* dx, float* scratch, float* y = nullptr);

}  // namespace jamba::cpu
