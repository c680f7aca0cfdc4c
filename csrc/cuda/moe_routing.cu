// MoE routing and data movement on the device. Up to 256 tokens (decode routes 1-16, where
// launches, not work, cost the time), routing is one launch of one block: a warp per token
// computes the softmax of its router logits and picks the top k by k warp-wide argmax rounds (ties
// go to the lower expert index, as on the CPU), counting rows per expert in shared memory; one
// thread turns the counts into group offsets and the list of active experts; then every (token,
// slot) gets its row in the grouped order. Above 256 tokens (prefill, training) one block would
// route them serially, so the same steps run as three launches: a warp per token over many blocks
// (counts in global memory), one thread for the offsets, and a block per expert that ranks its
// slots in slot order. Nothing is copied to the host: the expert GEMM reads the offsets on the
// device. The backward's pieces follow: the SwiGLU gate's, each row's routing-weight
// gradient, and the router softmax's over every expert (Jamba routes by the softmax of all
// experts' logits, unrenormalised, so every logit gets a gradient).
#include <climits>

#include "../core/decode_rules.h"
#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

using limits::kMaxExperts;
constexpr int kRouteThreads = 1024;
constexpr int64_t kOneBlockTokens = 256;  // above: the multi-block path

// The max of a row of E logits and Σ exp(logit − max), over the calling warp (every lane gets both):
// the router softmax, as routing and its backward take it.
struct SoftmaxStats {
  float max, sum;
};
__device__ SoftmaxStats softmax_stats(const float* __restrict__ lg, int E, int lane) {
  float mx = -INFINITY;
  for (int e = lane; e < E; e += 32) mx = fmaxf(mx, lg[e]);
  mx = warp_max(mx);
  float sum = 0.f;
  for (int e = lane; e < E; e += 32) sum += expf(lg[e] - mx);
  return {mx, warp_sum(sum)};
}

// Token t's top k experts and their probabilities, in descending order, by the warp calling it;
// each pick is counted in `counts` (shared memory).
__device__ void route_token(const float* __restrict__ lg, int E, int k, int lane, int32_t* __restrict__ idx,
                            float* __restrict__ weight, int32_t* counts) {
  const SoftmaxStats st = softmax_stats(lg, E, lane);
  const float mx = st.max, sum = st.sum;
  uint32_t taken = 0;  // bit i: this lane's expert lane + 32 i is chosen (E ≤ 1024)
  for (int j = 0; j < k; ++j) {
    // Ranked by probability in the router order both backends share (two logits may round to
    // one probability; NaN ranks last). A lane with no candidate left holds (NaN, INT32_MAX),
    // which every real expert beats, so the winner is always an expert below E.
    float best = NAN;
    int best_e = INT32_MAX;
    for (int i = 0, e = lane; e < E; ++i, e += 32) {
      if (taken >> i & 1u) continue;
      const float v = expf(lg[e] - mx) / sum;
      if (rules::routes_before(v, e, best, best_e)) { best = v; best_e = e; }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int oe = __shfl_xor_sync(0xffffffffu, best_e, o);
      if (rules::routes_before(ov, oe, best, best_e)) { best = ov; best_e = oe; }
    }
    if (lane == (best_e & 31)) {
      taken |= 1u << (best_e >> 5);
      idx[j] = best_e;
      weight[j] = best;
      atomicAdd(&counts[best_e], 1);
    }
  }
}

// From rows per expert: the group offsets (E + 1 entries, an exclusive scan) and the experts with
// rows in ascending order, then −1 up to E entries. One thread.
__device__ void group_experts(const int32_t* count, int E, int32_t* start, int32_t* list) {
  int32_t run = 0, n = 0;
  for (int e = 0; e < E; ++e) {
    const int32_t c = count[e];
    if (c) list[n++] = e;
    start[e] = run;
    run += c;
  }
  start[E] = run;
  for (int e = n; e < E; ++e) list[e] = -1;
}

__global__ void __launch_bounds__(kRouteThreads) route_kernel(
    const float* __restrict__ logits, int64_t tokens, int E, int k, int32_t* __restrict__ idx, float* __restrict__ weight,
    int32_t* __restrict__ counts, int32_t* __restrict__ offsets, int32_t* __restrict__ active, int32_t* __restrict__ row_of,
    int32_t* __restrict__ token_of_row, float* __restrict__ row_weight) {
  __shared__ int32_t count[kMaxExperts];  // rows per expert, then the scatter's cursors
  __shared__ int32_t start[kMaxExperts + 1];
  __shared__ int32_t list[kMaxExperts];
  for (int e = threadIdx.x; e < E; e += blockDim.x) count[e] = 0;
  __syncthreads();
  const int lane = threadIdx.x & 31;
  for (int64_t t = threadIdx.x / 32; t < tokens; t += blockDim.x / 32)
    route_token(logits + t * E, E, k, lane, idx + t * k, weight + t * k, count);
  __syncthreads();
  if (threadIdx.x == 0) group_experts(count, E, start, list);
  __syncthreads();
  for (int e = threadIdx.x; e <= E; e += blockDim.x) offsets[e] = start[e];
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    counts[e] = count[e];
    active[e] = list[e];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x) count[e] = 0;
  __syncthreads();
  // The picks written above by other warps of this block are visible after the barriers.
  for (int64_t i = threadIdx.x; i < tokens * k; i += blockDim.x) {
    const int e = idx[i];
    const int32_t row = start[e] + atomicAdd(&count[e], 1);
    row_of[i] = row;
    token_of_row[row] = int32_t(i / k);
    row_weight[row] = weight[i];
  }
}

// The multi-block path. 1: a warp per token, its picks counted in global memory.
__global__ void route_tokens_kernel(const float* __restrict__ logits, int64_t tokens, int E, int k, int32_t* __restrict__ idx,
                                    float* __restrict__ weight, int32_t* counts) {
  const int64_t t = int64_t(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (t >= tokens) return;  // a whole warp
  route_token(logits + t * E, E, k, threadIdx.x & 31, idx + t * k, weight + t * k, counts);
}

// 2: the offsets and the active experts.
__global__ void group_kernel(const int32_t* __restrict__ counts, int E, int32_t* __restrict__ offsets, int32_t* __restrict__ active) {
  if (threadIdx.x == 0) group_experts(counts, E, offsets, active);
}

// 3: a block per expert gives its slots their rows in slot order (a ballot and a scan of warp
// totals per round of blockDim slots), so the grouped order is the same every run.
__global__ void __launch_bounds__(kRouteThreads) rank_rows_kernel(const int32_t* __restrict__ idx, const float* __restrict__ weight, int64_t slots,
                                                                  int k, const int32_t* __restrict__ offsets, int32_t* __restrict__ row_of,
                                                                  int32_t* __restrict__ token_of_row, float* __restrict__ row_weight) {
  __shared__ int32_t warp_total[32];
  const int e = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  if (offsets[e + 1] == offsets[e]) return;  // the whole block
  int32_t base = offsets[e];
  for (int64_t c0 = 0; c0 < slots; c0 += blockDim.x) {
    const int64_t i = c0 + threadIdx.x;
    const bool mine = i < slots && idx[i] == e;
    const uint32_t ballot = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) warp_total[warp] = __popc(ballot);
    __syncthreads();
    int32_t before = __popc(ballot & ((1u << lane) - 1u)), round = 0;
    for (int w = 0; w < warps; ++w) {
      if (w < warp) before += warp_total[w];
      round += warp_total[w];
    }
    if (mine) {
      const int32_t row = base + before;
      row_of[i] = row;
      token_of_row[row] = int32_t(i / k);
      row_weight[row] = weight[i];
    }
    base += round;
    __syncthreads();  // warp_total is rewritten next round
  }
}

template <typename T>
__global__ void gather_kernel(const T* __restrict__ src, int64_t lds, const int32_t* __restrict__ token_of_row, int64_t cols,
                              T* __restrict__ dst, int64_t ldd) {
  const T* s = src + int64_t(token_of_row[blockIdx.x]) * lds;
  T* d = dst + int64_t(blockIdx.x) * ldd;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
}

template <typename T>
__global__ void combine_kernel(const T* __restrict__ rows, int64_t n, const int32_t* __restrict__ row_of, int64_t tokens,
                               int k, float* __restrict__ h, bool accumulate) {
  const int64_t t = blockIdx.y;
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= tokens || c >= n) return;
  float acc = 0.f;
  for (int j = 0; j < k; ++j) acc += to_f32(rows[int64_t(row_of[t * k + j]) * n + c]);
  h[t * n + c] = accumulate ? h[t * n + c] + acc : acc;
}

template <typename T>
__global__ void silu_gate_kernel(const T* __restrict__ gu, int64_t ldg, int64_t inner, T* __restrict__ out, int64_t ldo) {
  const int64_t r = blockIdx.y;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= inner) return;
  const T* g = gu + r * ldg;
  out[r * ldo + j] = from_f32<T>(silu(to_f32(g[j])) * to_f32(g[inner + j]));
}

// d(silu(g)·u): dg = da·u·silu'(g), du = da·silu(g), into a merged [dg | du] row (bf16: the
// operand of the gate|up product's input gradient).
__global__ void silu_gate_back_kernel(const bf16* __restrict__ gu, int64_t ldg, const float* __restrict__ da, int64_t ldd,
                                      int64_t inner, bf16* __restrict__ dgu, int64_t ldo) {
  const int64_t r = blockIdx.y;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= inner) return;
  const float g = to_f32(gu[r * ldg + j]), u = to_f32(gu[r * ldg + inner + j]), d = da[r * ldd + j];
  dgu[r * ldo + j] = from_f32<bf16>(d * u * dsilu(g));
  dgu[r * ldo + inner + j] = from_f32<bf16>(d * silu(g));
}

// dweight[r] = dy[token of r] · y_r (y_r the expert's output before its routing weight), a warp per row.
__global__ void routing_weight_grad_kernel(const float* __restrict__ dy, const float* __restrict__ y, const int32_t* __restrict__ token_of_row,
                                           int64_t rows, int64_t cols, float* __restrict__ dweight) {
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (r >= rows) return;
  const float* a = dy + int64_t(token_of_row[r]) * cols;
  const float* b = y + r * cols;
  float s = 0.f;
  for (int64_t c = threadIdx.x & 31; c < cols; c += 32) s += a[c] * b[c];
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) dweight[r] = s;
}

// Through the router softmax, a warp per token: with p the probabilities of all experts and g_j
// the gradient of chosen expert idx_j's weight, dlogit_e = p_e · ([e chosen] g − Σ_j p_idx_j g_j).
__global__ void router_back_kernel(const float* __restrict__ logits, const int32_t* __restrict__ idx, const int32_t* __restrict__ row_of,
                                   const float* __restrict__ dweight, int64_t tokens, int experts, int k, bf16* __restrict__ dlogits) {
  const int64_t t = int64_t(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (t >= tokens) return;
  const int lane = threadIdx.x & 31;
  const float* z = logits + t * experts;
  const SoftmaxStats st = softmax_stats(z, experts, lane);
  const float m = st.max, sum = st.sum;
  float mean = 0.f;
  for (int j = 0; j < k; ++j) mean += expf(z[idx[t * k + j]] - m) / sum * dweight[row_of[t * k + j]];
  for (int e = lane; e < experts; e += 32) {
    float g = 0.f;
    for (int j = 0; j < k; ++j)
      if (idx[t * k + j] == e) g += dweight[row_of[t * k + j]];
    dlogits[t * experts + e] = from_f32<bf16>(expf(z[e] - m) / sum * (g - mean));
  }
}

}  // namespace

void moe_route(const float* logits, int64_t tokens, int experts, int k, int32_t* idx, float* weight, int32_t* counts,
               int32_t* offsets, int32_t* active, int32_t* row_of, int32_t* token_of_row, float* row_weight,
               cudaStream_t stream) {
  if (experts < 1 || experts > kMaxExperts || k < 1 || k > experts)
    fail("invalid_argument", "moe_route: " + std::to_string(experts) + " experts, top " + std::to_string(k));
  if (tokens <= kOneBlockTokens) {
    route_kernel<<<1, kRouteThreads, 0, stream>>>(logits, tokens, experts, k, idx, weight, counts, offsets, active, row_of,
                                                 token_of_row, row_weight);
  } else {
    JAMBA_CUDA_CHECK(cudaMemsetAsync(counts, 0, size_t(experts) * sizeof(int32_t), stream));
    route_tokens_kernel<<<blocks_for(tokens, 8), 256, 0, stream>>>(logits, tokens, experts, k, idx, weight, counts);
    group_kernel<<<1, 32, 0, stream>>>(counts, experts, offsets, active);
    rank_rows_kernel<<<unsigned(experts), kRouteThreads, 0, stream>>>(idx, weight, tokens * k, k, offsets, row_of, token_of_row, row_weight);
  }
  JAMBA_CUDA_LAUNCHED("moe_route");
}

void gather_rows(const void* src, int64_t lds, DType type, const int32_t* token_of_row, int64_t rows, int64_t cols,
                 void* dst, int64_t ldd, cudaStream_t stream) {
  if (rows == 0) return;
  if (type == DType::BF16)
    gather_kernel<<<unsigned(rows), 256, 0, stream>>>(static_cast<const bf16*>(src), lds, token_of_row, cols, static_cast<bf16*>(dst), ldd);
  else
    gather_kernel<<<unsigned(rows), 256, 0, stream>>>(static_cast<const float*>(src), lds, token_of_row, cols, static_cast<float*>(dst), ldd);
  JAMBA_CUDA_LAUNCHED("gather_rows");
}

void moe_combine(const void* rows, DType rows_type, int64_t n, const int32_t* row_of, int64_t tokens, int k, float* h,
                 bool accumulate, cudaStream_t stream) {
  if (tokens == 0) return;
  const dim3 grid(blocks_for(n, 256), unsigned(tokens));
  if (rows_type == DType::BF16) combine_kernel<<<grid, 256, 0, stream>>>(static_cast<const bf16*>(rows), n, row_of, tokens, k, h, accumulate);
  else combine_kernel<<<grid, 256, 0, stream>>>(static_cast<const float*>(rows), n, row_of, tokens, k, h, accumulate);
  JAMBA_CUDA_LAUNCHED("moe_combine");
}

void silu_gate(const void* gu, int64_t ldg, DType type, int64_t rows, int64_t inner, void* out, int64_t ldo,
               cudaStream_t stream) {
  if (rows == 0) return;
  const dim3 grid(blocks_for(inner, 256), unsigned(rows));
  if (type == DType::BF16) silu_gate_kernel<<<grid, 256, 0, stream>>>(static_cast<const bf16*>(gu), ldg, inner, static_cast<bf16*>(out), ldo);
  else silu_gate_kernel<<<grid, 256, 0, stream>>>(static_cast<const float*>(gu), ldg, inner, static_cast<float*>(out), ldo);
  JAMBA_CUDA_LAUNCHED("silu_gate");
}

void silu_gate_back(const void* gu, int64_t ldg, const float* da, int64_t ldd, int64_t rows, int64_t inner, void* dgu, int64_t ldo,
                    cudaStream_t stream) {
  if (rows == 0) return;
  const dim3 grid(blocks_for(inner, 256), unsigned(rows));
  silu_gate_back_kernel<<<grid, 256, 0, stream>>>(static_cast<const bf16*>(gu), ldg, da, ldd, inner, static_cast<bf16*>(dgu), ldo);
  JAMBA_CUDA_LAUNCHED("silu_gate_back");
}

void routing_weight_grad(const float* dy, const float* y, const int32_t* token_of_row, int64_t rows, int64_t cols, float* dweight,
                         cudaStream_t stream) {
  if (rows == 0) return;
  routing_weight_grad_kernel<<<blocks_for(rows, 8), 256, 0, stream>>>(dy, y, token_of_row, rows, cols, dweight);
  JAMBA_CUDA_LAUNCHED("routing_weight_grad");
}

void router_back(const float* logits, const int32_t* idx, const int32_t* row_of, const float* dweight, int64_t tokens, int experts,
                 int k, void* dlogits, cudaStream_t stream) {
  if (tokens == 0) return;
  router_back_kernel<<<blocks_for(tokens, 8), 256, 0, stream>>>(logits, idx, row_of, dweight, tokens, experts, k, static_cast<bf16*>(dlogits));
  JAMBA_CUDA_LAUNCHED("router_back");
}

}  // namespace jamba::cuda
