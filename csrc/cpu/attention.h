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
};

// Query head h reads kv head h / (heads / kv_heads). Prefill (t_len > 1) and decode (t_len = 1)
// share this one kernel; its work items are (kv head, block of query rows).
void attention(const AttentionArgs& a);

}  // namespace jamba::cpu
