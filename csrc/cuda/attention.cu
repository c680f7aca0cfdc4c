// Attention over the KV cache: split-KV decode and flash-attention prefill, with grouped-query
// heads. The cache of a sequence is [position, kv_heads, head_dim] bf16 at pool + slot * stride.
//
// Decode (one query token per sequence) is bound by reading the cache, so the work is cut along
// the keys: block (sequence, kv head, split) streams its share of the keys once for all the query
// heads of that KV head, keeps a float32 online softmax per head and warp, and writes a partial
// (max, sum, weighted values) that a second kernel merges exactly. A sequence's split count comes
// from its own length on the device (rules::decode_splits), so its sums run in the same order
// alone or batched, and the launch shape does not depend on the lengths (one graph serves them
// all): the grid holds kMaxDecodeSplits splits, and blocks past a sequence's count exit at once.
//
// Prefill: a block takes 64 queries (a warp per 16) of one head; key and value tiles of 64
// positions go through shared memory; S = Q·K^T and O += P·V run on bf16 tensor cores (mma.sync
// m16n8k16), the softmax is online in float32, and key tiles past the causal edge are skipped.
#include <cstdint>

#include "../core/decode_rules.h"
#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

constexpr int kSplitThreads = 128;   // 4 warps
using limits::kMaxGroup;
using rules::kMaxDecodeSplits;

// One key into a query head's online softmax: running max m, sum l, weighted values acc (N per lane).
template <int N>
__device__ __forceinline__ void softmax_step(float& m, float& l, float* acc, float dot, const float* v) {
  const float mn = fmaxf(m, dot), corr = expf(m - mn), p = expf(dot - mn);
  l = l * corr + p;
#pragma unroll
  for (int i = 0; i < N; ++i) acc[i] = acc[i] * corr + p * v[i];
  m = mn;
}

// The end of a split block: the 4 warps' online-softmax states (max, sum, weighted values per
// query head of the group), already in shared memory, merged exactly and written as this split's
// partial per head.
template <int GM, int D>
__device__ void write_partial(const AttentionArgs& a, const float (*s_m)[GM], const float (*s_l)[GM], const float (*s_acc)[GM][D],
                              int s, int kvh, int split, float* __restrict__ ws) {
  __syncthreads();
  const int G = a.heads / a.kv_heads, hd = a.head_dim, stride = 2 + hd;
  for (int i = threadIdx.x; i < G * hd; i += kSplitThreads) {
    const int g = i / hd, d = i % hd;
    float M = -INFINITY;
    for (int w = 0; w < 4; ++w) M = fmaxf(M, s_m[w][g]);
    float L = 0.f, O = 0.f;
    for (int w = 0; w < 4; ++w) {
      const float f = s_m[w][g] == -INFINITY ? 0.f : expf(s_m[w][g] - M);
      L += s_l[w][g] * f;
      O += s_acc[w][g][d] * f;
    }
    float* p = ws + ((int64_t(s) * a.heads + kvh * G + g) * kMaxDecodeSplits + split) * stride;
    if (d == 0) { p[0] = M; p[1] = L; }
    p[2 + d] = O;
  }
}

// VPL: values per lane (head_dim ≤ 32 · VPL); GM: query heads per KV head, rounded up to a power of 2.
template <typename TQ, int VPL, int GM>
__global__ void __launch_bounds__(kSplitThreads) decode_split_kernel(AttentionArgs a, float* __restrict__ ws) {
  const int s = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int G = a.heads / a.kv_heads, hd = a.head_dim;
  const int len = a.past[s] + 1;
  if (split >= rules::decode_splits(len)) return;  // the whole block: no barrier is skipped
  int64_t b, e;
  rules::decode_split_range(len, split, b, e);
  const int k0 = int(b), k1 = int(e);
  const int kvw = a.kv_heads * hd;
  const bf16* K = static_cast<const bf16*>(a.k_pool) + int64_t(a.slot[s]) * a.kv_stride + kvh * hd;
  const bf16* V = static_cast<const bf16*>(a.v_pool) + int64_t(a.slot[s]) * a.kv_stride + kvh * hd;
  const TQ* Q = static_cast<const TQ*>(a.q) + int64_t(s) * a.ldq + int64_t(kvh) * G * hd;

  float q[GM][VPL], acc[GM][VPL], m[GM], l[GM];
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int v = 0; v < VPL; ++v) {
      const int d = lane + 32 * v;
      q[g][v] = g < G && d < hd ? to_f32(Q[g * hd + d]) * a.scale : 0.f;
      acc[g][v] = 0.f;
    }
  }
  for (int t = k0 + warp; t < k1; t += kSplitThreads / 32) {
    float kv[VPL], vv[VPL];
#pragma unroll
    for (int v = 0; v < VPL; ++v) {
      const int d = lane + 32 * v;
      kv[v] = d < hd ? __bfloat162float(K[int64_t(t) * kvw + d]) : 0.f;
      vv[v] = d < hd ? __bfloat162float(V[int64_t(t) * kvw + d]) : 0.f;
    }
#pragma unroll
    for (int g = 0; g < GM; ++g) {
      if (g >= G) break;
      float dot = 0.f;
#pragma unroll
      for (int v = 0; v < VPL; ++v) dot += q[g][v] * kv[v];
      softmax_step<VPL>(m[g], l[g], acc[g], warp_sum(dot), vv);
    }
  }
  // Merge the 4 warps through shared memory, then write this split's partial per head.
  __shared__ float s_m[4][GM], s_l[4][GM];
  __shared__ float s_acc[4][GM][32 * VPL];
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    if (g >= G) break;
    if (lane == 0) { s_m[warp][g] = m[g]; s_l[warp][g] = l[g]; }
#pragma unroll
    for (int v = 0; v < VPL; ++v) s_acc[warp][g][lane + 32 * v] = acc[g][v];
  }
  write_partial<GM, 32 * VPL>(a, s_m, s_l, s_acc, s, kvh, split, ws);
}

// The same split with 16-byte loads, for head_dim = 8 · L (L ≤ 32 lanes per key) and 16-byte
// aligned rows: a group of L lanes takes one key, each lane 8 of its values (one load of K and one
// of V), so a warp takes 32 / L keys at once and U such rounds are loaded before any is used. Each
// lane group keeps its own online softmax; the groups of a warp merge by shuffles, the warps
// through shared memory.
template <typename TQ, int GM, int L, int U>
__global__ void __launch_bounds__(kSplitThreads) decode_split_vec_kernel(AttentionArgs a, float* __restrict__ ws) {
  constexpr int KPW = 32 / L, kWarps = kSplitThreads / 32, kStep = kWarps * KPW;
  const int s = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, sub = lane % L, slot = lane / L;
  const int G = a.heads / a.kv_heads, hd = a.head_dim;
  const int len = a.past[s] + 1;
  if (split >= rules::decode_splits(len)) return;  // the whole block: no barrier is skipped
  int64_t b, e;
  rules::decode_split_range(len, split, b, e);
  const int64_t kvw = int64_t(a.kv_heads) * hd;
  const bf16* K = static_cast<const bf16*>(a.k_pool) + int64_t(a.slot[s]) * a.kv_stride + kvh * hd + sub * 8;
  const bf16* V = static_cast<const bf16*>(a.v_pool) + int64_t(a.slot[s]) * a.kv_stride + kvh * hd + sub * 8;
  const TQ* Q = static_cast<const TQ*>(a.q) + int64_t(s) * a.ldq + int64_t(kvh) * G * hd + sub * 8;

  float q[GM][8], acc[GM][8], m[GM], l[GM];
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      q[g][i] = g < G ? to_f32(Q[g * hd + i]) * a.scale : 0.f;
      acc[g][i] = 0.f;
    }
  }
  // The loop bound is the same for the whole warp, so every lane reaches every shuffle.
  for (int64_t base = b + warp * KPW; base < e; base += int64_t(kStep) * U) {
    uint4 kr[U], vr[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t t = base + int64_t(u) * kStep + slot;
      kr[u] = t < e ? __ldcs(reinterpret_cast<const uint4*>(K + t * kvw)) : make_uint4(0, 0, 0, 0);
      vr[u] = t < e ? __ldcs(reinterpret_cast<const uint4*>(V + t * kvw)) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const bool valid = base + int64_t(u) * kStep + slot < e;
      float kf[8], vf[8];
      const __nv_bfloat162* kp = reinterpret_cast<const __nv_bfloat162*>(&kr[u]);
      const __nv_bfloat162* vp = reinterpret_cast<const __nv_bfloat162*>(&vr[u]);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 x = __bfloat1622float2(kp[i]), y = __bfloat1622float2(vp[i]);
        kf[2 * i] = x.x; kf[2 * i + 1] = x.y; vf[2 * i] = y.x; vf[2 * i + 1] = y.y;
      }
#pragma unroll
      for (int g = 0; g < GM; ++g) {
        if (g >= G) break;
        float dot = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) dot += q[g][i] * kf[i];
#pragma unroll
        for (int o = L / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        if (valid) softmax_step<8>(m[g], l[g], acc[g], dot, vf);
      }
    }
  }
  // The warp's lane groups merged (exactly, max-rescaled), then the warps.
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    if (g >= G) break;
    float M = m[g];
#pragma unroll
    for (int o = L; o < 32; o <<= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    const float f = m[g] == -INFINITY ? 0.f : expf(m[g] - M);
    l[g] *= f;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[g][i] *= f;
#pragma unroll
    for (int o = L; o < 32; o <<= 1) {
      l[g] += __shfl_xor_sync(0xffffffffu, l[g], o);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[g][i] += __shfl_xor_sync(0xffffffffu, acc[g][i], o);
    }
    m[g] = M;
  }
  __shared__ float s_m[4][GM], s_l[4][GM];
  __shared__ float s_acc[4][GM][8 * L];
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    if (g >= G) break;
    if (lane == 0) { s_m[warp][g] = m[g]; s_l[warp][g] = l[g]; }
    if (slot == 0) {
#pragma unroll
      for (int i = 0; i < 8; ++i) s_acc[warp][g][sub * 8 + i] = acc[g][i];
    }
  }
  write_partial<GM, 8 * L>(a, s_m, s_l, s_acc, s, kvh, split, ws);
}

template <typename TO>
__global__ void decode_merge_kernel(AttentionArgs a, const float* __restrict__ ws) {
  const int s = blockIdx.x, h = blockIdx.y, hd = a.head_dim, stride = 2 + hd;
  const int splits = rules::decode_splits(a.past[s] + 1);
  const float* p = ws + (int64_t(s) * a.heads + h) * kMaxDecodeSplits * stride;
  float M = -INFINITY;
  for (int i = 0; i < splits; ++i) M = fmaxf(M, p[i * stride]);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float L = 0.f, O = 0.f;
    for (int i = 0; i < splits; ++i) {
      const float mi = p[i * stride];
      if (mi == -INFINITY) continue;  // an empty split
      const float f = expf(mi - M);
      L += p[i * stride + 1] * f;
      O += p[i * stride + 2 + d] * f;
    }
    static_cast<TO*>(a.out)[int64_t(s) * a.ldo + int64_t(h) * hd + d] = from_f32<TO>(O / L);
  }
}

// ---- prefill ----

constexpr int PQ = 64, PK = 64, kPrefillThreads = 128;

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// HD: head_dim rounded up to a multiple of 16 (the mma k and n steps); padding is zero.
template <typename TQ, typename TO, int HD>
__global__ void __launch_bounds__(kPrefillThreads) prefill_kernel(AttentionArgs a, int64_t t_len) {
  // The query tile is staged through the key tile's memory (it only lives until the fragments are
  // in registers), so HD = 128 fits in 48 KB of shared memory.
  static_assert(PQ == PK, "queries are staged in the key buffer");
  __shared__ __align__(16) bf16 Ks[PK][HD + 8];
  __shared__ __align__(16) bf16 Vt[HD][PK + 8];  // transposed: the P·V product reads pairs of keys
  bf16 (*Qs)[HD + 8] = Ks;
  const int h = blockIdx.y, G = a.heads / a.kv_heads, kvh = h / G, hd = a.head_dim;
  const int64_t q0 = int64_t(blockIdx.x) * PQ;
  const int past = a.past[0];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int kvw = a.kv_heads * hd;
  const bf16* K = static_cast<const bf16*>(a.k_pool) + int64_t(a.slot[0]) * a.kv_stride + kvh * hd;
  const bf16* V = static_cast<const bf16*>(a.v_pool) + int64_t(a.slot[0]) * a.kv_stride + kvh * hd;
  const TQ* Q = static_cast<const TQ*>(a.q) + int64_t(h) * hd;

  for (int i = threadIdx.x; i < PQ * HD; i += kPrefillThreads) {
    const int r = i / HD, d = i % HD;
    const int64_t t = q0 + r;
    Qs[r][d] = __float2bfloat16_rn(t < t_len && d < hd ? to_f32(Q[t * a.ldq + d]) : 0.f);
  }
  __syncthreads();
  // This warp's 16 query rows as A fragments, for every k step of the head dimension.
  uint32_t qf[HD / 16][4];
  const int qr = warp * 16 + g;
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    qf[kk][0] = *reinterpret_cast<const uint32_t*>(&Qs[qr][kk * 16 + tq * 2]);
    qf[kk][1] = *reinterpret_cast<const uint32_t*>(&Qs[qr + 8][kk * 16 + tq * 2]);
    qf[kk][2] = *reinterpret_cast<const uint32_t*>(&Qs[qr][kk * 16 + tq * 2 + 8]);
    qf[kk][3] = *reinterpret_cast<const uint32_t*>(&Qs[qr + 8][kk * 16 + tq * 2 + 8]);
  }
  float o[HD / 8][4] = {};
  float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};
  // The positions of this warp's rows g and g + 8; keys at positions ≤ that are visible.
  const int64_t pos0 = past + q0 + warp * 16 + g, pos1 = pos0 + 8;
  const int64_t last_key = q0 + PQ < t_len ? past + q0 + PQ : past + t_len;  // exclusive
  const float scale = a.scale * 1.4426950408889634f;  // exp2 domain

  for (int64_t kb = 0; kb < last_key; kb += PK) {
    __syncthreads();
    for (int i = threadIdx.x; i < PK * HD; i += kPrefillThreads) {
      const int r = i / HD, d = i % HD;
      const int64_t t = kb + r;
      const bool ok = t < last_key && d < hd;
      Ks[r][d] = ok ? K[t * kvw + d] : __float2bfloat16_rn(0.f);
      Vt[d][r] = ok ? V[t * kvw + d] : __float2bfloat16_rn(0.f);
    }
    __syncthreads();
    // S = Q·K^T for 16 rows × 64 keys: 8 n-tiles of 8 keys.
    float sc[PK / 8][4];
#pragma unroll
    for (int j = 0; j < PK / 8; ++j) {
      sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        uint32_t b[2];
        b[0] = *reinterpret_cast<const uint32_t*>(&Ks[j * 8 + g][kk * 16 + tq * 2]);
        b[1] = *reinterpret_cast<const uint32_t*>(&Ks[j * 8 + g][kk * 16 + tq * 2 + 8]);
        mma_bf16(sc[j], qf[kk], b);
      }
    }
    // Causal mask and online softmax (each row's values live in the 4 lanes of a quad).
    float mx[2] = {mrow[0], mrow[1]};
#pragma unroll
    for (int j = 0; j < PK / 8; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int64_t key = kb + j * 8 + tq * 2 + (c & 1);
        const int64_t pos = c < 2 ? pos0 : pos1;
        float v = sc[j][c] * scale;
        if (key > pos || key >= last_key) v = -INFINITY;
        sc[j][c] = v;
        mx[c >> 1] = fmaxf(mx[c >> 1], v);
      }
    float corr[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      corr[r] = mx[r] == -INFINITY ? 1.f : exp2f(mrow[r] - mx[r]);
      mrow[r] = mx[r];
      lrow[r] *= corr[r];
    }
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) {
      o[j][0] *= corr[0]; o[j][1] *= corr[0];
      o[j][2] *= corr[1]; o[j][3] *= corr[1];
    }
    // P (bf16) as A fragments: score tiles 2i and 2i + 1 make the k16 step i of P·V.
    uint32_t pf[PK / 16][4];
#pragma unroll
    for (int j = 0; j < PK / 8; ++j) {
      float p[4];
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const float m = mrow[c >> 1];
        p[c] = m == -INFINITY ? 0.f : exp2f(sc[j][c] - m);
        lrow[c >> 1] += p[c];
      }
      pf[j / 2][(j & 1) * 2 + 0] = pack_bf16(p[0], p[1]);
      pf[j / 2][(j & 1) * 2 + 1] = pack_bf16(p[2], p[3]);
    }
#pragma unroll
    for (int i = 0; i < PK / 16; ++i) {
#pragma unroll
      for (int j = 0; j < HD / 8; ++j) {
        uint32_t b[2];
        b[0] = *reinterpret_cast<const uint32_t*>(&Vt[j * 8 + g][i * 16 + tq * 2]);
        b[1] = *reinterpret_cast<const uint32_t*>(&Vt[j * 8 + g][i * 16 + tq * 2 + 8]);
        mma_bf16(o[j], pf[i], b);
      }
    }
  }
  // Row sums are spread over the quad; finish them, normalise and store.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 1);
    lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 2);
  }
  TO* O = static_cast<TO*>(a.out) + int64_t(h) * hd;
#pragma unroll
  for (int j = 0; j < HD / 8; ++j)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int64_t t = q0 + warp * 16 + g + (c >> 1) * 8;
      const int d = j * 8 + tq * 2 + (c & 1);
      if (t < t_len && d < hd) O[t * a.ldo + d] = from_f32<TO>(o[j][c] / lrow[c >> 1]);
    }
}

template <typename TQ>
void launch_prefill(const AttentionArgs& a, int64_t t_len, cudaStream_t s) {
  const dim3 grid(blocks_for(t_len, PQ), unsigned(a.heads));
  auto go = [&](auto hd) {
    constexpr int HD = decltype(hd)::value;
    if (a.out_type == DType::BF16) prefill_kernel<TQ, bf16, HD><<<grid, kPrefillThreads, 0, s>>>(a, t_len);
    else prefill_kernel<TQ, float, HD><<<grid, kPrefillThreads, 0, s>>>(a, t_len);
  };
  if (a.head_dim <= 16) go(std::integral_constant<int, 16>{});
  else if (a.head_dim <= 32) go(std::integral_constant<int, 32>{});
  else if (a.head_dim <= 64) go(std::integral_constant<int, 64>{});
  else if (a.head_dim <= limits::kMaxHeadDim) go(std::integral_constant<int, limits::kMaxHeadDim>{});
  else fail("invalid_argument", "the CUDA prefill attention supports head_dim up to " + std::to_string(limits::kMaxHeadDim) + ", not " + std::to_string(a.head_dim));
}

template <typename T>
__global__ void append_kv_kernel(const T* __restrict__ qkv, int64_t ld, int64_t k_col, int64_t v_col, int kvw,
                                 bf16* __restrict__ kp, bf16* __restrict__ vp, int64_t stride, const int32_t* __restrict__ slot,
                                 const int32_t* __restrict__ past, const int32_t* __restrict__ token_offsets) {
  const int s = blockIdx.y;
  const int64_t row = token_offsets[s] + blockIdx.x;
  if (row >= token_offsets[s + 1]) return;
  const int64_t pos = past[s] + blockIdx.x;
  const T* src = qkv + row * ld;
  bf16* kd = kp + int64_t(slot[s]) * stride + pos * kvw;
  bf16* vd = vp + int64_t(slot[s]) * stride + pos * kvw;
  for (int i = threadIdx.x; i < kvw; i += blockDim.x) {
    kd[i] = __float2bfloat16_rn(to_f32(src[k_col + i]));
    vd[i] = __float2bfloat16_rn(to_f32(src[v_col + i]));
  }
}

// The second kernel of a decode: each head's splits merged exactly into its output row.
void merge(const AttentionArgs& a, int64_t batch, const float* ws, cudaStream_t stream) {
  const dim3 mgrid{unsigned(batch), unsigned(a.heads)};
  if (a.out_type == DType::BF16) decode_merge_kernel<bf16><<<mgrid, 128, 0, stream>>>(a, ws);
  else decode_merge_kernel<float><<<mgrid, 128, 0, stream>>>(a, ws);
  JAMBA_CUDA_LAUNCHED("decode_attention");
}

}  // namespace

size_t decode_attention_workspace(int64_t batch, int heads, int head_dim) {
  return size_t(batch) * size_t(heads) * size_t(kMaxDecodeSplits) * size_t(2 + head_dim) * sizeof(float);
}

void decode_attention(const AttentionArgs& a, int64_t batch, void* partial, cudaStream_t stream) {
  if (batch == 0) return;
  const int G = a.heads / a.kv_heads;
  if (G > kMaxGroup || a.heads % a.kv_heads)
    fail("invalid_argument", "decode_attention: heads per KV head must divide and be ≤ " + std::to_string(kMaxGroup));
  const dim3 grid{unsigned(batch), unsigned(a.kv_heads), unsigned(kMaxDecodeSplits)};
  float* ws = static_cast<float*>(partial);
  // The 16-byte kernel for head_dim 64, 128 or 256 with 16-byte aligned rows, where a group's
  // queries and sums fit the registers (8 query heads per KV head); the lane-strided one otherwise.
  const bool aligned = reinterpret_cast<uintptr_t>(a.k_pool) % 16 == 0 && reinterpret_cast<uintptr_t>(a.v_pool) % 16 == 0 &&
                       a.kv_stride % 8 == 0;
  const int L = a.head_dim / 8;
  if (aligned && (a.head_dim == 64 || a.head_dim == 128 || a.head_dim == 256) && G <= 8) {
    auto by_lanes = [&](auto gm) {
      constexpr int GM = decltype(gm)::value, U = 4;
      auto run = [&](auto l) {
        constexpr int LL = decltype(l)::value;
        if (a.q_type == DType::BF16) decode_split_vec_kernel<bf16, GM, LL, U><<<grid, kSplitThreads, 0, stream>>>(a, ws);
        else decode_split_vec_kernel<float, GM, LL, U><<<grid, kSplitThreads, 0, stream>>>(a, ws);
      };
      if (L == 8) run(std::integral_constant<int, 8>{});
      else if (L == 16) run(std::integral_constant<int, 16>{});
      else run(std::integral_constant<int, 32>{});
    };
    if (G <= 1) by_lanes(std::integral_constant<int, 1>{});
    else if (G <= 2) by_lanes(std::integral_constant<int, 2>{});
    else if (G <= 4) by_lanes(std::integral_constant<int, 4>{});
    else by_lanes(std::integral_constant<int, 8>{});
    merge(a, batch, ws, stream);
    return;
  }
  auto by_group = [&](auto vpl, auto gm) {
    constexpr int VPL = decltype(vpl)::value, GM = decltype(gm)::value;
    // Queries and sums of a whole group live in registers: at most 2048 floats of them per warp.
    if constexpr (GM * VPL * 32 > 2048) {
      fail("invalid_argument", "decode_attention: heads per KV head × head_dim must be at most 2048");
    } else {
      if (a.q_type == DType::BF16) decode_split_kernel<bf16, VPL, GM><<<grid, kSplitThreads, 0, stream>>>(a, ws);
      else decode_split_kernel<float, VPL, GM><<<grid, kSplitThreads, 0, stream>>>(a, ws);
    }
  };
  auto go = [&](auto vpl) {
    if (G <= 1) by_group(vpl, std::integral_constant<int, 1>{});
    else if (G <= 2) by_group(vpl, std::integral_constant<int, 2>{});
    else if (G <= 4) by_group(vpl, std::integral_constant<int, 4>{});
    else if (G <= 8) by_group(vpl, std::integral_constant<int, 8>{});
    else by_group(vpl, std::integral_constant<int, kMaxGroup>{});
  };
  if (a.head_dim <= 32) go(std::integral_constant<int, 1>{});
  else if (a.head_dim <= 64) go(std::integral_constant<int, 2>{});
  else if (a.head_dim <= 128) go(std::integral_constant<int, 4>{});
  else if (a.head_dim <= 256) go(std::integral_constant<int, 8>{});
  else fail("invalid_argument", "decode_attention supports head_dim up to 256");
  merge(a, batch, ws, stream);
}

void prefill_attention(const AttentionArgs& a, int64_t t_len, cudaStream_t stream) {
  if (t_len == 0) return;
  if (a.heads % a.kv_heads) fail("invalid_argument", "prefill_attention: heads must be a multiple of kv_heads");
  if (a.q_type == DType::BF16) launch_prefill<bf16>(a, t_len, stream);
  else launch_prefill<float>(a, t_len, stream);
  JAMBA_CUDA_LAUNCHED("prefill_attention");
}

void append_kv(const void* qkv, int64_t ldqkv, DType type, int64_t k_col, int64_t v_col, int64_t t_len, int kv_width,
               void* k_pool, void* v_pool, int64_t kv_stride, const int32_t* slot, const int32_t* past, int64_t batch,
               const int32_t* token_offsets, cudaStream_t stream) {
  if (batch == 0 || t_len == 0) return;
  const dim3 grid{unsigned(t_len), unsigned(batch)};  // t_len: the longest sequence's new tokens
  if (type == DType::BF16)
    append_kv_kernel<<<grid, 128, 0, stream>>>(static_cast<const bf16*>(qkv), ldqkv, k_col, v_col, kv_width, static_cast<bf16*>(k_pool),
                                               static_cast<bf16*>(v_pool), kv_stride, slot, past, token_offsets);
  else
    append_kv_kernel<<<grid, 128, 0, stream>>>(static_cast<const float*>(qkv), ldqkv, k_col, v_col, kv_width, static_cast<bf16*>(k_pool),
                                               static_cast<bf16*>(v_pool), kv_stride, slot, past, token_offsets);
  JAMBA_CUDA_LAUNCHED("append_kv");
}

}  // namespace jamba::cuda
