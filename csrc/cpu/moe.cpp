#include "moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/decode_rules.h"

namespace jamba::cpu {

void router_softmax(const float* logits, int64_t tokens, int64_t experts, float* probs) {
  for (int64_t t = 0; t < tokens; ++t) {
    const float* lg = logits + t * experts;
    float* p = probs + t * experts;
    float mx = lg[0];
    for (int64_t e = 1; e < experts; ++e) mx = std::max(mx, lg[e]);
    double sum = 0;
    for (int64_t e = 0; e < experts; ++e) { p[e] = std::exp(lg[e] - mx); sum += p[e]; }
    for (int64_t e = 0; e < experts; ++e) p[e] = float(p[e] / sum);
  }
}

void router_topk(const float* logits, int64_t tokens, int64_t experts, int64_t k, int32_t* idx, float* weight) {
  std::vector<float> p(static_cast<size_t>(experts));
  std::vector<int32_t> order(static_cast<size_t>(experts));
  for (int64_t t = 0; t < tokens; ++t) {
    router_softmax(logits + t * experts, 1, experts, p.data());
    for (int64_t e = 0; e < experts; ++e) order[size_t(e)] = int32_t(e);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) { return rules::routes_before(p[size_t(a)], a, p[size_t(b)], b); });
    for (int64_t j = 0; j < k; ++j) {
      idx[t * k + j] = order[size_t(j)];
      weight[t * k + j] = p[size_t(order[size_t(j)])];
    }
  }
}

namespace {

// The routing of a block of tokens: logits, top-k, and the (token, slot) pairs grouped by expert
// (a counting sort keeps token order within an expert).
struct Routing {
  std::vector<float> logits, weight;
  std::vector<int32_t> idx;
  std::vector<int64_t> start, slots;  // expert e's slots: slots[start[e] .. start[e + 1])
  int64_t max_rows = 0, max_inner = 0;
};

Routing route(const MoeBlock& moe, const float* x, int64_t tokens) {
  const int64_t experts = int64_t(moe.experts.size()), hidden = moe.router.k, k = moe.top_k;
  Routing r;
  r.logits.resize(size_t(tokens * experts));
  gemm(x, hidden, tokens, moe.router, r.logits.data(), experts);
  r.idx.resize(size_t(tokens * k));
  r.weight.resize(size_t(tokens * k));
  router_topk(r.logits.data(), tokens, experts, k, r.idx.data(), r.weight.data());
  r.start.assign(size_t(experts + 1), 0);
  for (int64_t i = 0; i < tokens * k; ++i) r.start[size_t(r.idx[size_t(i)] + 1)]++;
  for (int64_t e = 0; e < experts; ++e) r.start[size_t(e + 1)] += r.start[size_t(e)];
  r.slots.resize(size_t(tokens * k));
  std::vector<int64_t> fill(r.start.begin(), r.start.end() - 1);
  for (int64_t i = 0; i < tokens * k; ++i) r.slots[size_t(fill[size_t(r.idx[size_t(i)])]++)] = i;
  for (int64_t e = 0; e < experts; ++e) {
    r.max_rows = std::max(r.max_rows, r.start[size_t(e + 1)] - r.start[size_t(e)]);
    r.max_inner = std::max(r.max_inner, moe.experts[size_t(e)].inner());
  }
  return r;
}

}  // namespace

void moe_forward(const MoeBlock& moe, const float* x, int64_t tokens, float* out, float* router_logits) {
  const int64_t experts = int64_t(moe.experts.size()), hidden = moe.router.k, k = moe.top_k;
  const Routing rt = route(moe, x, tokens);
  if (router_logits) std::memcpy(router_logits, rt.logits.data(), rt.logits.size() * sizeof(float));
  std::memset(out, 0, sizeof(float) * size_t(tokens * hidden));
  std::vector<float> xs(size_t(rt.max_rows * hidden)), ys(size_t(rt.max_rows * hidden)), scratch(size_t(rt.max_rows * 3 * rt.max_inner));
  for (int64_t e = 0; e < experts; ++e) {
    const int64_t n = rt.start[size_t(e + 1)] - rt.start[size_t(e)];
    if (n == 0) continue;
    const int64_t* sl = rt.slots.data() + rt.start[size_t(e)];
    for (int64_t r = 0; r < n; ++r) std::memcpy(xs.data() + r * hidden, x + (sl[r] / k) * hidden, sizeof(float) * size_t(hidden));
    gated_mlp(moe.experts[size_t(e)], xs.data(), n, ys.data(), scratch.data());
    for (int64_t r = 0; r < n; ++r) {
      const float w = rt.weight[size_t(sl[r])];
      float* o = out + (sl[r] / k) * hidden;
      const float* y = ys.data() + r * hidden;
      for (int64_t c = 0; c < hidden; ++c) o[c] += w * y[c];
    }
  }
}

void moe_back(const MoeBlock& moe, const float* x, int64_t tokens, const float* dy, float* dx) {
  const int64_t experts = int64_t(moe.experts.size()), hidden = moe.router.k, k = moe.top_k;
  const Routing rt = route(moe, x, tokens);
  std::vector<float> probs(size_t(tokens * experts)), ghat(size_t(tokens * k));
  router_softmax(rt.logits.data(), tokens, experts, probs.data());
  std::memset(dx, 0, sizeof(float) * size_t(tokens * hidden));
  std::vector<float> xs(size_t(rt.max_rows * hidden)), dys(size_t(rt.max_rows * hidden)), ys(size_t(rt.max_rows * hidden)),
      dxs(size_t(rt.max_rows * hidden)), scratch(size_t(rt.max_rows * 3 * rt.max_inner));
  for (int64_t e = 0; e < experts; ++e) {
    const int64_t n = rt.start[size_t(e + 1)] - rt.start[size_t(e)];
    if (n == 0) continue;
    const int64_t* sl = rt.slots.data() + rt.start[size_t(e)];
    for (int64_t r = 0; r < n; ++r) {
      const int64_t t = sl[r] / k;
      std::memcpy(xs.data() + r * hidden, x + t * hidden, sizeof(float) * size_t(hidden));
      const float w = rt.weight[size_t(sl[r])];
      for (int64_t c = 0; c < hidden; ++c) dys[size_t(r * hidden + c)] = w * dy[t * hidden + c];
    }
    gated_mlp_back(moe.experts[size_t(e)], xs.data(), n, dys.data(), dxs.data(), scratch.data(), ys.data());
    for (int64_t r = 0; r < n; ++r) {
      const int64_t t = sl[r] / k;
      const float* d = dy + t * hidden;
      const float* y = ys.data() + r * hidden;
      float g = 0.f;
      for (int64_t c = 0; c < hidden; ++c) {
        dx[t * hidden + c] += dxs[size_t(r * hidden + c)];
        g += d[c] * y[c];
      }
      ghat[size_t(sl[r])] = g;
    }
  }
  // Through the router: the softmax over every expert.
  std::vector<float> dl(size_t(tokens * experts));
  for (int64_t t = 0; t < tokens; ++t) {
    float mean = 0.f;
    for (int64_t j = 0; j < k; ++j) mean += rt.weight[size_t(t * k + j)] * ghat[size_t(t * k + j)];
    for (int64_t e = 0; e < experts; ++e) dl[size_t(t * experts + e)] = -probs[size_t(t * experts + e)] * mean;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = rt.idx[size_t(t * k + j)];
      dl[size_t(t * experts + e)] += probs[size_t(t * experts + e)] * ghat[size_t(t * k + j)];
    }
  }
  gemm_dx(dl.data(), experts, tokens, moe.router, dx, hidden, true);
}

}  // namespace jamba::cpu
