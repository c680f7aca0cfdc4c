// The dimensions the executor needs, already validated by lib/config.ts.
#pragma once
#include <cstdint>

namespace jamba {

struct ModelDims {
  int64_t vocab = 0, hidden = 0, intermediate = 0, layers = 0;
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  int64_t d_inner = 0, d_state = 0, d_conv = 0, dt_rank = 0;
  int64_t experts = 0, top_k = 0;
  float eps = 1e-6f;
};

}  // namespace jamba
