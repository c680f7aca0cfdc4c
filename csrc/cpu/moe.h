// Jamba's sparse MoE block: router softmax over all experts in float32, then top-k of the
// probabilities with no renormalisation; tokens are grouped by expert so each expert runs one
// batched gated MLP, and results are scattered back weighted by their routing probability.
#pragma once
#include <cstdint>
#include <vector>
#include "gemm.h"
#include "mlp.h"

namespace jamba::cpu {

// probs[t, :] = softmax(logits[t, :]); for each token the k first in the router order
// (rules::routes_before: larger first, NaN last, ties to the lower expert index) go to
// idx/weight[t, 0..k), in that order.
void router_topk(const float* logits, int64_t tokens, int64_t experts, int64_t k, int32_t* idx, float* weight);

// The router's softmax over every expert, as router_topk computes it: probs[t, e].
void router_softmax(const float* logits, int64_t tokens, int64_t experts, float* probs);

struct MoeBlock {
  PackedWeight router;             // [E, H]
  std::vector<GatedMlp> experts;   // E
  int64_t top_k = 2;
};

// out[T, H] = Σ_k weight · expert(x). router_logits (optional, [T, E]) receives the router output.
void moe_forward(const MoeBlock& moe, const float* x, int64_t tokens, float* out, float* router_logits);

// The backward with respect to x from dy = ∂L/∂out (weights frozen), with the routing the
// forward takes: each chosen expert's MLP backward scaled by its probability p_e, and the
// router's, through the softmax over all experts (no renormalisation, as Jamba routes):
// dℓ_j = p_j·(ĝ_j − Σ_{e chosen} p_e·ĝ_e), ĝ_e = ⟨dy, expert_e(x)⟩ (0 for experts not chosen).
// A token's gradient sums its experts in expert order: it does not depend on the other tokens.
void moe_back(const MoeBlock& moe, const float* x, int64_t tokens, const float* dy, float* dx);

}  // namespace jamba::cpu
