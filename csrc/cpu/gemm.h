// Dense and int8-expert matrix products: out[M,N] = x[M,K] · Wᵀ (+ bias), W stored [N,K] as in
// PyTorch's Linear. Weights are repacked once at load into 16-column panels ([N/16][K][16]) so the
// inner loop streams one contiguous row of a panel per k and broadcasts one activation.
#pragma once
#include <cstdint>
#include <vector>
#include "../core/tensor.h"

namespace jamba::cpu {

struct PackedWeight {
  DType dtype = DType::F32;  // F32, BF16 or I8 (ExpertsInt8: one float scale per output row)
  int64_t n = 0, k = 0;
  Tensor panels;             // [num_panels()][k][16] of dtype, zero padded
  Tensor scale;              // I8 only: [n] f32
  Tensor bias;               // optional [n] f32

  // Panels of 16 rows, rounded up to whole groups of 8 so the kernels never special-case a
  // partial group (the padding is zeros and its outputs are never stored).
  static int64_t panels_for(int64_t n) { return ((n + 15) / 16 + 7) / 8 * 8; }
  int64_t num_panels() const { return panels_for(n); }
  size_t bytes() const { return panels.nbytes() + scale.nbytes() + bias.nbytes(); }
  // Row r of W as float32 (for embedding lookups out of a tied or untied table).
  void read_row(int64_t r, float* out) const;
};

// Packs a row-major [n, k] matrix stored as `src_dtype` (f32, bf16 or f16). bf16 stays bf16,
// f32 stays f32, f16 widens to f32; quantize_int8 applies ExpertsInt8 instead.
PackedWeight pack_weight(const void* src, DType src_dtype, int64_t n, int64_t k);

// ExpertsInt8 as the reference defines it: scale[r] = max|W[r,:]| / 127 in float32,
// q = clamp(round_half_even(W / scale), -127, 127). An all-zero row gets scale 0 and q 0.
void quantize_int8_rows(const float* w, int64_t n, int64_t k, int8_t* q, float* scale);
PackedWeight pack_weight_int8(const void* src, DType src_dtype, int64_t n, int64_t k);

// out[m, :] = x[m, :] · Wᵀ + bias. Each output is one fused multiply-add chain over k in order,
// whatever M or the thread count, so a row's result never depends on the rows batched with it.
void gemm(const float* x, int64_t ldx, int64_t m, const PackedWeight& w, float* out, int64_t ldo);

// The backward of gemm with respect to x (weights frozen): dx[m, :] = dy[m, :] · W, over the
// panels as packed, no second copy of W. ExpertsInt8 folds its row scale into dy first
// (dx = (dy ⊙ scale) · Q). Each output is one fixed-order sum over W's rows, whatever M, the
// rows batched with it or the thread count. `accumulate` adds to dx instead of overwriting it.
void gemm_dx(const float* dy, int64_t lddy, int64_t m, const PackedWeight& w, float* dx, int64_t lddx, bool accumulate = false);

}  // namespace jamba::cpu
