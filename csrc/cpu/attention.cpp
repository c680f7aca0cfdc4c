#include "attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../core/thread_pool.h"
#include "simd.h"

namespace jamba::cpu {

namespace {
constexpr int64_t kQueryRows = 8;   // query positions per tile (all heads of one kv group)
constexpr int64_t kKeyBlock = 64;   // keys scored per pass
}  // namespace

void attention(const AttentionArgs& a) {
  const int64_t rep = a.heads / a.kv_heads, hd = a.head_dim;
  const int64_t qblocks = (a.t_len + kQueryRows - 1) / kQueryRows;
  ThreadPool::instance().parallel_for(a.kv_heads * qblocks, [&](int64_t i0, int64_t i1) {
    const int64_t rows = kQueryRows * rep;
    std::vector<float> acc(size_t(rows * hd)), m(static_cast<size_t>(rows)), l(static_cast<size_t>(rows));
    // The key block transposed to [head_dim][kKeyBlock]: scores for 16 keys are one vector FMA
    // per head dimension, shared by every query row of the tile.
    std::vector<float> kt(size_t(hd * kKeyBlock));
    alignas(64) float sr[kKeyBlock];
    for (int64_t item = i0; item < i1; ++item) {
      // Later query blocks see more keys; interleaving blocks across kv heads balances threads.
      const int64_t g = item % a.kv_heads, qb = item / a.kv_heads;
      const int64_t t0 = qb * kQueryRows, nt = std::min(kQueryRows, a.t_len - t0);
      std::fill(acc.begin(), acc.end(), 0.f);
      std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
      std::fill(l.begin(), l.end(), 0.f);
      const int64_t key_end = a.past + t0 + nt;  // exclusive: the last row sees keys < past + t0 + nt
      const float* kg = a.k + g * hd;
      const float* vg = a.v + g * hd;
      for (int64_t j0 = 0; j0 < key_end; j0 += kKeyBlock) {
        const int64_t nj = std::min(kKeyBlock, key_end - j0);
        for (int64_t j = 0; j < kKeyBlock; ++j)
          for (int64_t e = 0; e < hd; ++e) kt[size_t(e * kKeyBlock + j)] = j < nj ? kg[(j0 + j) * a.ldk + e] : 0.f;
        for (int64_t t = 0; t < nt; ++t) {
          const int64_t nv = std::min(nj, a.past + t0 + t + 1 - j0);  // keys of this block the row may see
          if (nv <= 0) continue;
          for (int64_t r = 0; r < rep; ++r) {
            const int64_t row = t * rep + r;
            const float* q = a.q + (t0 + t) * a.ldq + (g * rep + r) * hd;
            v16f s4[kKeyBlock / kLanes] = {};
            for (int64_t e = 0; e < hd; ++e)
              for (int64_t c = 0; c < kKeyBlock / kLanes; ++c) s4[c] += q[e] * load16(kt.data() + e * kKeyBlock + c * kLanes);
            for (int64_t c = 0; c < kKeyBlock / kLanes; ++c) store16(sr + c * kLanes, s4[c] * a.scale);
            float bmax = -std::numeric_limits<float>::infinity();
            for (int64_t j = 0; j < nv; ++j) bmax = std::max(bmax, sr[j]);
            const float mnew = std::max(m[size_t(row)], bmax);
            const float corr = exp_approx(m[size_t(row)] - mnew);
            float* ar = acc.data() + row * hd;
            float sum = 0.f;
            for (int64_t e = 0; e < hd; ++e) ar[e] *= corr;
            for (int64_t j = 0; j < nv; ++j) {
              const float p = exp_approx(sr[j] - mnew);
              sum += p;
              const float* vr = vg + (j0 + j) * a.ldv;
              for (int64_t e = 0; e < hd; ++e) ar[e] += p * vr[e];
            }
            l[size_t(row)] = l[size_t(row)] * corr + sum;
            m[size_t(row)] = mnew;
          }
        }
      }
      for (int64_t t = 0; t < nt; ++t)
        for (int64_t r = 0; r < rep; ++r) {
          const int64_t row = t * rep + r;
          float* o = a.out + (t0 + t) * a.ldo + (g * rep + r) * hd;
          const float inv = 1.f / l[size_t(row)];
          for (int64_t e = 0; e < hd; ++e) o[e] = acc[size_t(row * hd + e)] * inv;
          if (a.lse) a.lse[(t0 + t) * a.heads + g * rep + r] = m[size_t(row)] + std::log(l[size_t(row)]);
        }
    }
  });
}

namespace {

float dot(const float* x, const float* y, int64_t n) {
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

}  // namespace

void attention_back(const AttentionArgs& a, const AttentionGrads& g) {
  const int64_t rep = a.heads / a.kv_heads, hd = a.head_dim, T = a.t_len, keys = a.past + T;
  // D[t, h] = dO · O: the softmax's correction term, once per row and head.
  std::vector<float> D(size_t(T * a.heads));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < a.heads; ++h) D[size_t(t * a.heads + h)] = dot(g.dout + t * g.lddout + h * hd, g.out + t * g.ldout + h * hd, hd);
  // dS for query row t, head h, key j, recomputed from the log-sum-exp (and P with it).
  auto ds = [&](int64_t t, int64_t h, int64_t j, float* p) {
    const int64_t kv = h / rep;
    const float s = dot(a.q + t * a.ldq + h * hd, a.k + j * a.ldk + kv * hd, hd) * a.scale;
    *p = exp_approx(s - g.lse[t * a.heads + h]);
    const float dp = dot(g.dout + t * g.lddout + h * hd, a.v + j * a.ldv + kv * hd, hd);
    return *p * (dp - D[size_t(t * a.heads + h)]);
  };
  // Pass 1: dq, one query row and head at a time over its visible keys.
  ThreadPool::instance().parallel_for(T * a.heads, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / a.heads, h = i % a.heads, kv = h / rep;
      float* dq = g.dq + t * g.lddq + h * hd;
      for (int64_t e = 0; e < hd; ++e) dq[e] = 0.f;
      for (int64_t j = 0; j <= a.past + t; ++j) {
        float p;
        const float d = ds(t, h, j, &p) * a.scale;
        const float* kj = a.k + j * a.ldk + kv * hd;
        for (int64_t e = 0; e < hd; ++e) dq[e] += d * kj[e];
      }
    }
  });
  // Pass 2: dk and dv, one key and kv head at a time over the queries (of its group) that see it.
  ThreadPool::instance().parallel_for(keys * a.kv_heads, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t j = i / a.kv_heads, kv = i % a.kv_heads;
      float* dk = g.dk + j * g.lddk + kv * hd;
      float* dv = g.dv + j * g.lddv + kv * hd;
      for (int64_t e = 0; e < hd; ++e) dk[e] = dv[e] = 0.f;
      for (int64_t t = std::max<int64_t>(0, j - a.past); t < T; ++t)
        for (int64_t r = 0; r < rep; ++r) {
          const int64_t h = kv * rep + r;
          float p;
          const float d = ds(t, h, j, &p) * a.scale;
          const float* q = a.q + t * a.ldq + h * hd;
          const float* dout = g.dout + t * g.lddout + h * hd;
          for (int64_t e = 0; e < hd; ++e) {
            dk[e] += d * q[e];
            dv[e] += p * dout[e];
          }
        }
    }
  });
}

}  // namespace jamba::cpu
