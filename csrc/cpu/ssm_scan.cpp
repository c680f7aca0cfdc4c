#include "ssm_scan.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/thread_pool.h"
#include "simd.h"

namespace jamba::cpu {

namespace {

// Channels per block (kLanes from simd.h): the vector runs across channels, not state.

// Scans tokens [0, t_len) for channels [d0, d0 + nd) of one sequence. The state block is
// transposed to [d_state][lanes] so every step is lane-parallel with no horizontal sums.
void scan_block(const ScanArgs& s, int64_t row0, int64_t t_len, int64_t d0, int64_t nd, float* state, float* h) {
  const int64_t n_state = s.d_state;
  alignas(64) float a[kLanes * 64];
  std::vector<float> a_big;
  float* al = a;
  if (n_state > 64) { a_big.resize(size_t(n_state * kLanes)); al = a_big.data(); }
  for (int64_t n = 0; n < n_state; ++n)
    for (int64_t l = 0; l < kLanes; ++l) {
      al[n * kLanes + l] = l < nd ? s.a[(d0 + l) * n_state + n] : 0.f;
      h[n * kLanes + l] = l < nd ? state[(d0 + l) * n_state + n] : 0.f;
    }
  alignas(64) float delta[kLanes], du[kLanes], u[kLanes], y[kLanes], zg[kLanes], bias[kLanes], dsk[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) {
    bias[l] = l < nd ? s.dt_bias[d0 + l] : 0.f;
    dsk[l] = l < nd ? s.d_skip[d0 + l] : 0.f;
  }
  for (int64_t t = 0; t < t_len; ++t) {
    const int64_t row = row0 + t;
    const float* ur = s.u + row * s.ldu + d0;
    const float* dr = s.dt + row * s.lddt + d0;
    const float* zr = s.z + row * s.ldz + d0;
    for (int64_t l = 0; l < kLanes; ++l) {
      u[l] = l < nd ? ur[l] : 0.f;
      delta[l] = l < nd ? dr[l] : 0.f;
      zg[l] = l < nd ? zr[l] : 0.f;
    }
    for (int64_t l = 0; l < kLanes; ++l) {
      delta[l] = softplus(delta[l] + bias[l]);
      du[l] = delta[l] * u[l];
      y[l] = 0.f;
    }
    const float* br = s.b + row * s.ldb;
    const float* cr = s.c + row * s.ldc;
    for (int64_t n = 0; n < n_state; ++n) {
      const float bn = br[n], cn = cr[n];
      float* hn = h + n * kLanes;
      const float* an = al + n * kLanes;
      for (int64_t l = 0; l < kLanes; ++l) {
        hn[l] = exp_approx(delta[l] * an[l]) * hn[l] + du[l] * bn;
        y[l] += hn[l] * cn;
      }
    }
    float* yr = s.y + row * s.ldy + d0;
    for (int64_t l = 0; l < nd; ++l) yr[l] = (y[l] + dsk[l] * u[l]) * silu(zg[l]);
  }
  for (int64_t n = 0; n < n_state; ++n)
    for (int64_t l = 0; l < nd; ++l) state[(d0 + l) * n_state + n] = h[n * kLanes + l];
}

}  // namespace

void selective_scan(const ScanArgs& s, float* state) {
  const int64_t blocks = (s.d_inner + kLanes - 1) / kLanes;
  ThreadPool::instance().parallel_for(blocks, [&](int64_t b0, int64_t b1) {
    std::vector<float> h(size_t(s.d_state * kLanes));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t d0 = b * kLanes;
      scan_block(s, 0, s.t_len, d0, std::min<int64_t>(kLanes, s.d_inner - d0), state, h.data());
    }
  });
}

void selective_state_update(const ScanArgs& s, float* const* states, int64_t batch) {
  const int64_t blocks = (s.d_inner + kLanes - 1) / kLanes;
  ThreadPool::instance().parallel_for(blocks * batch, [&](int64_t i0, int64_t i1) {
    std::vector<float> h(size_t(s.d_state * kLanes));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t seq = i / blocks, d0 = (i % blocks) * kLanes;
      scan_block(s, seq, 1, d0, std::min<int64_t>(kLanes, s.d_inner - d0), states[seq], h.data());
    }
  });
}

}  // namespace jamba::cpu
