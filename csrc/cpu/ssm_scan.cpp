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

namespace {

constexpr int64_t kScanChunk = 64;  // tokens whose states one chunk of the backward rebuilds

// The backward of one block of channels [d0, d0 + nd) of one sequence. db/dc receive this
// block's partial sums over its channels ([T, N] each), reduced across blocks by the caller.
void scan_back_block(const ScanArgs& s, const float* state0, const ScanGrads& g, int64_t d0, int64_t nd,
                     float* db, float* dc) {
  const int64_t N = s.d_state, T = s.t_len, chunks = (T + kScanChunk - 1) / kScanChunk;
  const auto lane = [&](const float* p, int64_t ld, int64_t t, float* out) {
    for (int64_t l = 0; l < kLanes; ++l) out[l] = l < nd ? p[t * ld + d0 + l] : 0.f;
  };
  std::vector<float> a(size_t(N * kLanes)), starts(size_t((chunks + 1) * N * kLanes)), hs(size_t(kScanChunk * N * kLanes)),
      G(size_t(N * kLanes), 0.f);
  alignas(64) float bias[kLanes], dsk[kLanes], u[kLanes], v[kLanes], z[kLanes], dy[kLanes], acc[kLanes];
  std::vector<float> pre(size_t(kScanChunk * kLanes)), deltas(size_t(kScanChunk * kLanes));
  for (int64_t l = 0; l < kLanes; ++l) {
    bias[l] = l < nd ? s.dt_bias[d0 + l] : 0.f;
    dsk[l] = l < nd ? s.d_skip[d0 + l] : 0.f;
    for (int64_t n = 0; n < N; ++n) {
      a[size_t(n * kLanes + l)] = l < nd ? s.a[(d0 + l) * N + n] : 0.f;
      starts[size_t(n * kLanes + l)] = l < nd ? state0[(d0 + l) * N + n] : 0.f;
    }
  }
  // One step of the forward recurrence from h (N × lanes) into out; also Δ and the pre-gate output.
  auto step = [&](int64_t t, const float* h, float* out, float* delta_out, float* pre_out) {
    lane(s.u, s.ldu, t, u);
    lane(s.dt, s.lddt, t, v);
    for (int64_t l = 0; l < kLanes; ++l) {
      delta_out[l] = softplus(v[l] + bias[l]);
      acc[l] = 0.f;
    }
    const float* br = s.b + t * s.ldb;
    const float* cr = s.c + t * s.ldc;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t l = 0; l < kLanes; ++l) {
        const float hn = exp_approx(delta_out[l] * a[size_t(n * kLanes + l)]) * h[n * kLanes + l] + delta_out[l] * u[l] * br[n];
        out[n * kLanes + l] = hn;
        acc[l] += hn * cr[n];
      }
    for (int64_t l = 0; l < kLanes; ++l) pre_out[l] = acc[l] + dsk[l] * u[l];
  };
  // Pass 1: the state at the start of each chunk.
  {
    std::vector<float> h(starts.begin(), starts.begin() + N * kLanes), next(size_t(N * kLanes));
    float scratch[kLanes], scratch2[kLanes];
    for (int64_t c = 0; c < chunks; ++c) {
      std::copy(h.begin(), h.end(), starts.begin() + c * N * kLanes);
      for (int64_t t = c * kScanChunk; t < std::min(T, (c + 1) * kScanChunk); ++t) {
        step(t, h.data(), next.data(), scratch, scratch2);
        h.swap(next);
      }
    }
  }
  // Pass 2: the chunks last to first, each rebuilt from its start, then the reverse recurrence.
  for (int64_t c = chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * kScanChunk, t1 = std::min(T, t0 + kScanChunk);
    const float* start = starts.data() + c * N * kLanes;
    for (int64_t t = t0; t < t1; ++t)
      step(t, t == t0 ? start : hs.data() + (t - t0 - 1) * N * kLanes, hs.data() + (t - t0) * N * kLanes,
           deltas.data() + (t - t0) * kLanes, pre.data() + (t - t0) * kLanes);
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t i = t - t0;
      lane(s.u, s.ldu, t, u);
      lane(s.dt, s.lddt, t, v);
      lane(s.z, s.ldz, t, z);
      lane(g.dy, g.lddy, t, dy);
      const float* ht = hs.data() + i * N * kLanes;
      const float* hp = i > 0 ? hs.data() + (i - 1) * N * kLanes : start;
      const float* dl = deltas.data() + i * kLanes;
      alignas(64) float dpre[kLanes], ddelta[kLanes], du[kLanes];
      for (int64_t l = 0; l < kLanes; ++l) {
        const float sg = 1.0f / (1.0f + exp_approx(-z[l]));
        dpre[l] = dy[l] * z[l] * sg;
        const float dzl = dy[l] * pre[size_t(i * kLanes + l)] * sg * (1.0f + z[l] * (1.0f - sg));
        if (l < nd) g.dz[t * g.lddz + d0 + l] = dzl;
        du[l] = dpre[l] * dsk[l];
        ddelta[l] = 0.f;
      }
      const float* br = s.b + t * s.ldb;
      const float* cr = s.c + t * s.ldc;
      for (int64_t n = 0; n < N; ++n) {
        float* gn = G.data() + n * kLanes;
        const float* an = a.data() + n * kLanes;
        float sc = 0.f, sb = 0.f;
        for (int64_t l = 0; l < kLanes; ++l) {
          gn[l] += cr[n] * dpre[l];
          sc += ht[n * kLanes + l] * dpre[l];
          const float ab = exp_approx(dl[l] * an[l]);
          ddelta[l] += gn[l] * (an[l] * ab * hp[n * kLanes + l] + br[n] * u[l]);
          sb += gn[l] * dl[l] * u[l];
          du[l] += gn[l] * dl[l] * br[n];
          gn[l] *= ab;
        }
        dc[t * N + n] = sc;
        db[t * N + n] = sb;
      }
      for (int64_t l = 0; l < nd; ++l) {
        const float x = v[l] + bias[l];
        const float dsp = x > 20.f ? 1.0f : 1.0f / (1.0f + exp_approx(-x));
        g.du[t * g.lddu + d0 + l] = du[l];
        g.ddt[t * g.ldddt + d0 + l] = ddelta[l] * dsp;
      }
    }
  }
  if (g.dstate)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t l = 0; l < nd; ++l) g.dstate[(d0 + l) * N + n] = G[size_t(n * kLanes + l)];
}

}  // namespace

void selective_scan_back(const ScanArgs& s, const float* state0, const ScanGrads& g) {
  const int64_t blocks = (s.d_inner + kLanes - 1) / kLanes, T = s.t_len, N = s.d_state;
  // Each block's share of dB and dC, then summed over blocks in block order.
  std::vector<float> part(size_t(blocks * 2 * T * N));
  ThreadPool::instance().parallel_for(blocks, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t d0 = b * kLanes;
      float* pb = part.data() + b * 2 * T * N;
      scan_back_block(s, state0, g, d0, std::min<int64_t>(kLanes, s.d_inner - d0), pb, pb + T * N);
    }
  });
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      float sb = 0.f, sc = 0.f;
      for (int64_t b = 0; b < blocks; ++b) {
        sb += part[size_t((b * 2) * T * N + t * N + n)];
        sc += part[size_t((b * 2 + 1) * T * N + t * N + n)];
      }
      g.db[t * g.lddb + n] = sb;
      g.dc[t * g.lddc + n] = sc;
    }
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
