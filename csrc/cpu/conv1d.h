// Mamba's causal depthwise conv1d with the SiLU that follows it.
#pragma once
#include <cstdint>

namespace jamba::cpu {

// For t in [0, T): out[t, c] = silu(bias[c] + Σ_j w[c, j] · x[t - (width-1) + j, c]), where inputs
// before t = 0 come from `state` ([channels, width-1], the previous pre-conv inputs, oldest first).
// On return state holds the last width-1 inputs, so a prefill can be resumed or followed by
// single-token decode steps (T = 1) with the same function. bias may be null.
void causal_conv1d_silu(const float* x, int64_t ldx, int64_t t_len, int64_t channels, const float* w,
                        int64_t width, const float* bias, float* state, float* out, int64_t ldo);

// The backward of causal_conv1d_silu with respect to its inputs, given du = ∂L/∂out (weights
// frozen): the pre-activation is recomputed from x and the initial `state` (left unchanged), then
// dx[τ, c] = Σ_j w[c, j] · ds[τ + width-1 - j, c] with ds = du · silu'(s). The terms for τ < 0 are
// the gradient of the initial state, written to dstate ([channels, width-1]) when it is not null.
void causal_conv1d_silu_back(const float* x, int64_t ldx, int64_t t_len, int64_t channels, const float* w,
                             int64_t width, const float* bias, const float* state, const float* du, int64_t lddu,
                             float* dx, int64_t lddx, float* dstate);

}  // namespace jamba::cpu
