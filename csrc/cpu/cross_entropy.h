// The LM head and cross-entropy, fused and chunked for training: logits are made for a few target
// rows at a time and never all at once (at a 65,536 vocabulary a row of logits is 256 KiB).
#pragma once
#include <cstdint>
#include "gemm.h"

namespace jamba::cpu {

// For rows i of x (final hidden states): z = x_i · headᵀ, loss_i = weight_i · (logsumexp(z) − z[ids_i]),
// and dx_i = weight_i · (softmax(z) − onehot(ids_i)) · head, written to dx (overwritten). Returns
// Σ_i loss_i; row_loss (may be null) receives each loss_i. Each row's result depends on that row only.
double cross_entropy_head(const PackedWeight& head, const float* x, int64_t ldx, int64_t rows, const int32_t* ids,
                          const float* weights, float* dx, int64_t lddx, double* row_loss);

}  // namespace jamba::cpu
