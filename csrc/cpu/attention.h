// Causal grouped-query attention for one sequence against its KV cache, flash style: keys are
// visited in blocks with an online softmax, so no T×T score matrix ever exists.
#pragma once
#include <cstdint>

namespace jamba::cpu {

struct AttentionArgs {
  const float* q; int64_t ldq;   // [t_len, heads * head_dim], queries at positions past .. past + t_len - 1
  const float* k; int64_t ldk;   // [past + t_len, kv_heads * head_dim], the cache including the new keys
  const float* v; int64_t ldv;
  float* out; int64_t ldo;       // [t_len, heads * head_dim]
  int64_t t_len, past, heads, kv_heads, head_dim;
  float scale;                   // 1/sqrt(head_dim)
  float* lse = nullptr;          // optional [t_len, heads]: each row's log-sum-exp of its scores (for the backward)
};

// Query head h reads kv head h / (heads / kv_heads). Prefill (t_len > 1) and decode (t_len = 1)
// share this one kernel; its work items are (kv head, block of query rows).
void attention(const AttentionArgs& a);

// The backward with respect to q, k and v (FlashAttention-2's, in two passes that each recompute
// the probabilities from the forward's log-sum-exp: one over query rows for dq, one over keys for
// dk and dv, so neither needs atomics and both keep a fixed order). dk and dv cover every key,
// the cache's `past` ones included, and are overwritten.
struct AttentionGrads {
  const float* out; int64_t ldout;  // the forward's output
  const float* lse;                 // [t_len, heads] from the forward
  const float* dout; int64_t lddout;
  float* dq; int64_t lddq;          // [t_len, heads * head_dim]
  float* dk; int64_t lddk;          // [past + t_len, kv_heads * head_dim]
  float* dv; int64_t lddv;
};
void attention_back(const AttentionArgs& a, const AttentionGrads& g);

}  // namespace jamba::cpu
