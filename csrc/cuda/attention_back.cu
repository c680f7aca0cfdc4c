// The backward of causal attention with respect to its queries, keys and values (training through
// the frozen model), in FlashAttention-2's form: the probabilities are never stored. A first
// kernel owns one query row and head (a warp, the head's dimensions across its lanes): it
// rebuilds the row's softmax statistics and output online, D = dO·O, then walks the keys again
// for dQ = scale · Σ_j P_ij (dO_i·V_j − D_i) K_j, and keeps logsumexp and D for the second.
// The second owns one key position and KV head and walks the query rows that see it, over every
// query head of the group: dV_j = Σ P_ij dO_i and dK_j = scale · Σ P_ij (dO_i·V_j − D_i) Q_i.
// Every sum is in float32 and in a fixed order, so the result does not depend on the launch.
// These are CUDA-core kernels (two dot products per query-key pair, warp shuffles), written for
// being right first; the tensor-core tiling of the forward's prefill kernel is their next step.
#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

constexpr int kWarps = 4;  // warps (rows or keys) per block

// A head's vector spread over a warp: lane l holds dimensions l, l + 32, … (DPL per lane).
template <int DPL>
struct Lanes {
  float v[DPL];
  __device__ void load(const bf16* p, int hd, float scale = 1.f) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int j = 0; j < DPL; ++j) v[j] = lane + 32 * j < hd ? __bfloat162float(p[lane + 32 * j]) * scale : 0.f;
  }
  __device__ void load(const float* p, int hd) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int j = 0; j < DPL; ++j) v[j] = lane + 32 * j < hd ? p[lane + 32 * j] : 0.f;
  }
  __device__ float dot(const Lanes& o) const {
    float s = 0.f;
#pragma unroll
    for (int j = 0; j < DPL; ++j) s += v[j] * o.v[j];
    return warp_sum(s);
  }
  __device__ void axpy(float a, const Lanes& o) {
#pragma unroll
    for (int j = 0; j < DPL; ++j) v[j] += a * o.v[j];
  }
  __device__ void store(float* p, int hd, float scale = 1.f) const {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int j = 0; j < DPL; ++j)
      if (lane + 32 * j < hd) p[lane + 32 * j] = v[j] * scale;
  }
};

template <int DPL>
__global__ void __launch_bounds__(kWarps * 32) attention_back_rows_kernel(AttentionBackArgs a) {
  const int64_t i = blockIdx.x;
  const int h = blockIdx.y * kWarps + int(threadIdx.x >> 5);
  if (h >= a.heads) return;  // a whole warp
  const int hd = a.head_dim, kvh = h / (a.heads / a.kv_heads);
  const int64_t kvw = int64_t(a.kv_heads) * hd, keys = a.past + i + 1;
  const bf16* Q = static_cast<const bf16*>(a.q);
  const bf16* K = static_cast<const bf16*>(a.k) + kvh * hd;
  const bf16* V = static_cast<const bf16*>(a.v) + kvh * hd;
  Lanes<DPL> q, dO, o{}, kj, vj;
  q.load(Q + i * a.ldq + int64_t(h) * hd, hd, a.scale);
  dO.load(a.dout + i * a.lddout + int64_t(h) * hd, hd);
  // The row's softmax, online.
  float m = -INFINITY, l = 0.f;
  for (int64_t j = 0; j < keys; ++j) {
    kj.load(K + j * kvw, hd);
    vj.load(V + j * kvw, hd);
    const float s = q.dot(kj), mn = fmaxf(m, s), r = expf(m - mn), p = expf(s - mn);
#pragma unroll
    for (int d = 0; d < DPL; ++d) o.v[d] = o.v[d] * r + p * vj.v[d];
    l = l * r + p;
    m = mn;
  }
  const float lse = m + logf(l), D = dO.dot(o) / l;
  Lanes<DPL> dq{};
  for (int64_t j = 0; j < keys; ++j) {
    kj.load(K + j * kvw, hd);
    vj.load(V + j * kvw, hd);
    const float p = expf(q.dot(kj) - lse);
    dq.axpy(p * (dO.dot(vj) - D), kj);
  }
  dq.store(a.dq + i * a.lddq + int64_t(h) * hd, hd, a.scale);
  if ((threadIdx.x & 31) == 0) {
    a.lse[i * a.heads + h] = lse;
    a.delta[i * a.heads + h] = D;
  }
}

template <int DPL>
__global__ void __launch_bounds__(kWarps * 32) attention_back_keys_kernel(AttentionBackArgs a) {
  const int64_t j = blockIdx.x;
  const int g = blockIdx.y * kWarps + int(threadIdx.x >> 5);
  if (g >= a.kv_heads) return;
  const int hd = a.head_dim, group = a.heads / a.kv_heads;
  const int64_t kvw = int64_t(a.kv_heads) * hd;
  const bf16* Q = static_cast<const bf16*>(a.q);
  Lanes<DPL> kj, vj, dk{}, dv{}, q, dO;
  kj.load(static_cast<const bf16*>(a.k) + j * kvw + int64_t(g) * hd, hd);
  vj.load(static_cast<const bf16*>(a.v) + j * kvw + int64_t(g) * hd, hd);
  // Query row i sits at position past + i and sees keys 0 … past + i.
  for (int64_t i = j > a.past ? j - a.past : 0; i < a.t_len; ++i)
    for (int h = g * group; h < (g + 1) * group; ++h) {
      q.load(Q + i * a.ldq + int64_t(h) * hd, hd, a.scale);
      dO.load(a.dout + i * a.lddout + int64_t(h) * hd, hd);
      const float p = expf(q.dot(kj) - a.lse[i * a.heads + h]);
      dv.axpy(p, dO);
      dk.axpy(p * (dO.dot(vj) - a.delta[i * a.heads + h]), q);  // q carries the scale already
    }
  dk.store(a.dk + j * a.lddkv + int64_t(g) * hd, hd);
  dv.store(a.dv + j * a.lddkv + int64_t(g) * hd, hd);
}

}  // namespace

void attention_back(const AttentionBackArgs& a, cudaStream_t stream) {
  if (a.t_len == 0) return;
  if (a.head_dim > limits::kMaxHeadDim) fail("invalid_argument", "attention_back supports head_dim up to " + std::to_string(limits::kMaxHeadDim));
  if (a.kv_heads < 1 || a.heads % a.kv_heads != 0) fail("invalid_argument", "attention_back: heads must be a multiple of kv_heads");
  auto go = [&](auto dpl) {
    constexpr int DPL = decltype(dpl)::value;
    attention_back_rows_kernel<DPL><<<dim3(unsigned(a.t_len), blocks_for(a.heads, kWarps)), kWarps * 32, 0, stream>>>(a);
    attention_back_keys_kernel<DPL><<<dim3(unsigned(a.past + a.t_len), blocks_for(a.kv_heads, kWarps)), kWarps * 32, 0, stream>>>(a);
  };
  static_assert(limits::kMaxHeadDim <= 128, "Lanes<4> holds up to 128 dimensions");
  if (a.head_dim <= 32) go(std::integral_constant<int, 1>{});
  else if (a.head_dim <= 64) go(std::integral_constant<int, 2>{});
  else if (a.head_dim <= 96) go(std::integral_constant<int, 3>{});
  else go(std::integral_constant<int, 4>{});
  JAMBA_CUDA_LAUNCHED("attention_back");
}

}  // namespace jamba::cuda
