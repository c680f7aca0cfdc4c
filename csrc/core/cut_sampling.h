// Drawing a token under top-k, top-p and min-p cuts without sorting, for the CUDA sampler; the
// same code runs on the host so the CPU tests check its logic (ops.sampleCutsHost).
//
// The cuts are those of lib/sampling.ts: in the order (logit descending, id ascending), top-k
// keeps the first k tokens, top-p the shortest prefix of those whose weight reaches top_p of their
// total, and min-p the tokens of weight ≥ min_p (the weight of the best is 1). Each keeps a prefix
// of the order, so the kept set S is their intersection, and token c is in S exactly when
//   count_before(c) < k,  mass_before(c) < top_p · total_k,  w(c) ≥ min_p,
// with count/mass_before(c) over the tokens ordered before c and total_k the weight of the first k.
//
// Rejection (FlashInfer's sampling without sorting): draw c from the tokens still allowed,
// proportionally to their weight; if c is in S, it is the draw; if not, neither is any token
// ordered after it (S is a prefix), so only the tokens before c stay allowed, and draw again.
// Conditioned on acceptance each round draws from S by weight, so the result is an exact draw
// from S; the best token is always in S, so it ends, in about log(V) rounds at worst. A round
// is two passes over the row (a draw by inverse CDF in id order, and the counts before the
// candidate, whose mass is the next round's allowed mass).
//
// The row is reached only through `Ops`, passes over the whole row: a sequential loop on the host
// and block-wide reductions on the device. Ops provides
//   float max_logit();
//   float logit(int32_t id);
//   void sums(A allowed, B before, float inv_t, float top, CutSums& out);
//        // Σ weight over `allowed`, Σ weight and count over `before`
//   int32_t draw(A allowed, float inv_t, float top, float u);
//        // in id order, the first allowed id whose running weight passes u (the best token if
//        // rounding leaves none)
//   uint32_t count_at_least(uint32_t key);   // tokens whose ordered_key(logit) ≥ key
// where a predicate is called as pred(id, logit) and a weight is exp((logit − top) · inv_t).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "decode_rules.h"

namespace jamba::rules {

// Philox-4x32-10 (Salmon et al., 2011): four 32-bit outputs for counter (step, c2), key from the seed.
JAMBA_HOST_DEVICE void philox(uint64_t seed, uint64_t step, uint32_t c2_in, uint32_t out[4]) {
  uint32_t c0 = uint32_t(step), c1 = uint32_t(step >> 32), c2 = c2_in, c3 = 0;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int i = 0; i < 10; ++i) {
    const uint64_t p0 = uint64_t(0xD2511F53u) * c0, p1 = uint64_t(0xCD9E8D57u) * c2;
    const uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0, n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c0 = n0; c1 = uint32_t(p1); c2 = n2; c3 = uint32_t(p0);
    k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

// A uniform number in [0, 1) for round `round` of the draw at (seed, step): 24 bits.
JAMBA_HOST_DEVICE float cut_uniform(uint64_t seed, uint64_t step, uint32_t round) {
  uint32_t b[4];
  philox(seed, step, 0x80000000u | round, b);  // counters apart from the one-pass noise's (c2 = token group + 1)
  return float(b[0] >> 8) * (1.0f / 16777216.0f);
}

// A logit's place in the order as an unsigned integer: larger logits give larger keys.
JAMBA_HOST_DEVICE uint32_t ordered_key(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
JAMBA_HOST_DEVICE float from_ordered_key(uint32_t k) {
  const uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  float x;
  memcpy(&x, &u, 4);
  return x;
}

struct CutSums {
  float allowed_mass = 0.f;  // Σ weight of the allowed tokens
  float before_mass = 0.f;   // Σ weight of the tokens before the pivot
  uint32_t before_count = 0;
};

struct Cuts {
  float temperature;  // > 0
  int top_k;          // 0: off
  float top_p;        // 1: off
  float min_p;        // 0: off
  uint64_t seed, step;
};

template <class Ops>
JAMBA_HOST_DEVICE int32_t draw_with_cuts(Ops& ops, int64_t vocab, const Cuts& c) {
  const float top = ops.max_logit(), inv_t = 1.f / c.temperature, min_p = c.min_p;
  const bool use_k = c.top_k > 0 && c.top_k < vocab, use_p = c.top_p < 1.f;
  auto kept_by_min_p = [=](int32_t, float x) { return min_p <= 0.f || expf((x - top) * inv_t) >= min_p; };

  // total_k, the weight of the first k tokens (of all without top-k), of which top-p takes its
  // share; and the first round's allowed mass (min-p's tokens), in the same pass.
  const bool k_cut = use_k && use_p;
  float xk = INFINITY;  // with top-k and top-p: the k-th largest logit
  if (k_cut) {  // 32 counting passes: top-k and top-p together are the slow case
    // The largest key t with at least k tokens at or above it, bit by bit.
    uint32_t t = 0;
    for (int bit = 31; bit >= 0; --bit)
      if (ops.count_at_least(t | (1u << bit)) >= uint32_t(c.top_k)) t |= 1u << bit;
    xk = from_ordered_key(t);
  }
  CutSums s;
  ops.sums(kept_by_min_p, [=](int32_t, float x) { return !k_cut || x > xk; }, inv_t, top, s);
  float total_k = s.before_mass;
  if (k_cut)  // the tokens above the k-th logit, then as many of its ties (one weight) as complete the k
    total_k += float(uint32_t(c.top_k) - s.before_count) * expf((xk - top) * inv_t);
  const float need = c.top_p * total_k;
  float mass = s.allowed_mass;

  // Allowed: ordered before the last rejected candidate (none yet), and kept by min-p.
  int32_t pivot = -1;
  float pivot_x = 0.f;
  for (uint32_t round = 0;; ++round) {
    auto allowed = [=](int32_t j, float x) {
      return (pivot < 0 || x > pivot_x || (x == pivot_x && j < pivot)) && kept_by_min_p(j, x);
    };
    const int32_t cand = ops.draw(allowed, inv_t, top, cut_uniform(c.seed, c.step, round) * mass);
    const float cx = ops.logit(cand);
    ops.sums([](int32_t, float) { return false; }, [=](int32_t j, float x) { return x > cx || (x == cx && j < cand); }, inv_t, top, s);
    const bool in_k = !use_k || s.before_count < uint32_t(c.top_k);
    const bool in_p = !use_p || s.before_mass < need;
    // The best token (nothing before it) is always kept: the loop ends there at the latest.
    if ((in_k && in_p) || s.before_count == 0) return cand;
    pivot = cand;
    pivot_x = cx;
    // The next round's allowed set is the tokens before cand; min-p keeps them all, as it keeps
    // cand, whose logit is lower.
    mass = s.before_mass;
  }
}

}  // namespace jamba::rules
