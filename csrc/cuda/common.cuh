// Shared pieces of the CUDA kernels: error checks that become typed JS errors, float32 <-> storage
// conversions (the kernels are templated over float and bf16 storage, math is float32), the
// activation functions exactly as the CPU backend defines them, and warp reductions.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>

#include "../core/error.h"

namespace jamba::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a sticky launch error so the context stays usable
  fail(e == cudaErrorMemoryAllocation ? "out_of_memory" : "cuda", std::string(what) + ": " + cudaGetErrorString(e));
}

#define JAMBA_CUDA_CHECK(x) ::jamba::cuda::check((x), #x)
#define JAMBA_CUDA_LAUNCHED(name) ::jamba::cuda::check(cudaGetLastError(), name)

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(bf16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float v) { return __float2bfloat16_rn(v); }

// softplus(v) = v above 20, as torch and the CPU backend define it.
__device__ __forceinline__ float softplus(float v) { return v > 20.f ? v : log1pf(expf(v)); }
__device__ __forceinline__ float silu(float v) { return v / (1.f + expf(-v)); }

template <int Width = 32>
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = Width / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, Width);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread gets it.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // part[] may still be read by a previous call
  if (lane == 0) part[warp] = v;
  __syncthreads();
  v = lane < warps ? part[lane] : 0.f;
  return warp_sum(v);
}

inline unsigned blocks_for(int64_t n, int per_block) { return unsigned((n + per_block - 1) / per_block); }

}  // namespace jamba::cuda
