#include "moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace jamba::cpu {

void router_topk(const float* logits, int64_t tokens, int64_t experts, int64_t k, int32_t* idx, float* weight) {
  std::vector<float> p(static_cast<size_t>(experts));
  std::vector<int32_t> order(static_cast<size_t>(experts));
  for (int64_t t = 0; t < tokens; ++t) {
    const float* lg = logits + t * experts;
    float mx = lg[0];
    for (int64_t e = 1; e < experts; ++e) mx = std::max(mx, lg[e]);
    double sum = 0;
    for (int64_t e = 0; e < experts; ++e) { p[size_t(e)] = std::exp(lg[e] - mx); sum += p[size_t(e)]; }
    for (int64_t e = 0; e < experts; ++e) p[size_t(e)] = float(p[size_t(e)] / sum);
    for (int64_t e = 0; e < experts; ++e) order[size_t(e)] = int32_t(e);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return p[size_t(a)] > p[size_t(b)] || (p[size_t(a)] == p[size_t(b)] && a < b);
    });
    for (int64_t j = 0; j < k; ++j) {
      idx[t * k + j] = order[size_t(j)];
      weight[t * k + j] = p[size_t(order[size_t(j)])];
    }
  }
}

void moe_forward(const MoeBlock& moe, const float* x, int64_t tokens, float* out, float* router_logits) {
  const int64_t experts = int64_t(moe.experts.size()), hidden = moe.router.k, k = moe.top_k;
  std::vector<float> logits(size_t(tokens * experts));
  gemm(x, hidden, tokens, moe.router, logits.data(), experts);
  if (router_logits) std::memcpy(router_logits, logits.data(), logits.size() * sizeof(float));
  std::vector<int32_t> idx(size_t(tokens * k));
  std::vector<float> weight(size_t(tokens * k));
  router_topk(logits.data(), tokens, experts, k, idx.data(), weight.data());

  // Group (token, slot) pairs by expert: a counting sort keeps token order within an expert.
  std::vector<int64_t> start(size_t(experts + 1), 0);
  for (int64_t i = 0; i < tokens * k; ++i) start[size_t(idx[size_t(i)] + 1)]++;
  for (int64_t e = 0; e < experts; ++e) start[size_t(e + 1)] += start[size_t(e)];
  std::vector<int64_t> slots(size_t(tokens * k)), fill(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < tokens * k; ++i) slots[size_t(fill[size_t(idx[size_t(i)])]++)] = i;

  std::memset(out, 0, sizeof(float) * size_t(tokens * hidden));
  int64_t max_rows = 0, max_inner = 0;
  for (int64_t e = 0; e < experts; ++e) {
    max_rows = std::max(max_rows, start[size_t(e + 1)] - start[size_t(e)]);
    max_inner = std::max(max_inner, moe.experts[size_t(e)].inner());
  }
  std::vector<float> xs(size_t(max_rows * hidden)), ys(size_t(max_rows * hidden)), scratch(size_t(max_rows * 3 * max_inner));
  for (int64_t e = 0; e < experts; ++e) {
    const int64_t n = start[size_t(e + 1)] - start[size_t(e)];
    if (n == 0) continue;
    const int64_t* sl = slots.data() + start[size_t(e)];
    for (int64_t r = 0; r < n; ++r) std::memcpy(xs.data() + r * hidden, x + (sl[r] / k) * hidden, sizeof(float) * size_t(hidden));
    gated_mlp(moe.experts[size_t(e)], xs.data(), n, ys.data(), scratch.data());
    for (int64_t r = 0; r < n; ++r) {
      const float w = weight[size_t(sl[r])];
      float* o = out + (sl[r] / k) * hidden;
      const float* y = ys.data() + r * hidden;
      for (int64_t c = 0; c < hidden; ++c) o[c] += w * y[c];
    }
  }
}

}  // namespace jamba::cpu
