// MoE routing and data movement on the device. Routing is one launch of one block (decode
// routes 1-16 tokens, where launches, not work, cost the time): a warp per token computes the
// softmax of its router logits and picks the top k by k warp-wide argmax rounds (ties go to the
// lower expert index, as on the CPU), counting rows per expert in shared memory; one thread turns
// the counts into group offsets and the list of active experts; then every (token, slot) gets its
// row in the grouped order. Nothing is copied to the host: the expert GEMM reads the offsets on
// the device.
#include <climits>

#include "../core/decode_rules.h"
#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

using limits::kMaxExperts;
constexpr int kRouteThreads = 1024;

// Token t's top k experts and their probabilities, in descending order, by the warp calling it;
// each pick is counted in `counts` (shared memory).
__device__ void route_token(const float* __restrict__ lg, int E, int k, int lane, int32_t* __restrict__ idx,
                            float* __restrict__ weight, int32_t* counts) {
  float mx = -INFINITY;
  for (int e = lane; e < E; e += 32) mx = fmaxf(mx, lg[e]);
  mx = warp_max(mx);
  float sum = 0.f;
  for (int e = lane; e < E; e += 32) sum += expf(lg[e] - mx);
  sum = warp_sum(sum);
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
  if (threadIdx.x == 0) {
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

}  // namespace

void moe_route(const float* logits, int64_t tokens, int experts, int k, int32_t* idx, float* weight, int32_t* counts,
               int32_t* offsets, int32_t* active, int32_t* row_of, int32_t* token_of_row, float* row_weight,
               cudaStream_t stream) {
  if (experts < 1 || experts > kMaxExperts || k < 1 || k > experts)
    fail("invalid_argument", "moe_route: " + std::to_string(experts) + " experts, top " + std::to_string(k));
  route_kernel<<<1, kRouteThreads, 0, stream>>>(logits, tokens, experts, k, idx, weight, counts, offsets, active, row_of,
                                               token_of_row, row_weight);
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

}  // namespace jamba::cuda
