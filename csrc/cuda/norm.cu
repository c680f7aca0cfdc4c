// RMSNorm with the residual add of the previous sub-layer fused in, and the embedding gather.
// One block per row: the row is read once to add and square, the sum of squares is reduced
// across the block, and the second pass reads the row back from L1/L2 to scale it.
#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

// No __restrict__ on h and out: the Mamba dt/B/C norms run in place.
template <typename TD, typename TO>
__global__ void rmsnorm_residual_kernel(float* h, int64_t ldh, const TD* __restrict__ delta, int64_t ldd, int64_t cols,
                                        const float* __restrict__ weight, float eps, TO* out, int64_t ldo) {
  float* hr = h + blockIdx.x * ldh;
  const TD* dr = delta ? delta + blockIdx.x * ldd : nullptr;
  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = hr[c];
    if (dr) {
      v += to_f32(dr[c]);
      hr[c] = v;
    }
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum(ss) / float(cols) + eps);
  TO* o = out + blockIdx.x * ldo;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = from_f32<TO>(hr[c] * inv * weight[c]);
}

template <typename T>
__global__ void add_bias_kernel(T* __restrict__ x, int64_t ld, int64_t cols, const float* __restrict__ bias) {
  T* r = x + blockIdx.x * ld;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) r[c] = from_f32<T>(to_f32(r[c]) + bias[c]);
}

// A counter-based hash (splitmix64) of (seed, i), as a uniform number in [lo, hi).
template <typename T>
__global__ void fill_uniform_kernel(T* __restrict__ out, int64_t n, uint64_t seed, float lo, float hi) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * uint64_t(i + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  out[i] = from_f32<T>(lo + (hi - lo) * float(z >> 40) * (1.0f / 16777216.0f));
}

__global__ void to_bf16_kernel(const float* __restrict__ x, int64_t n, bf16* __restrict__ out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16_rn(x[i]);
}

template <typename T>
__global__ void embed_kernel(const T* __restrict__ table, int64_t hidden, const int32_t* __restrict__ ids, float* __restrict__ out) {
  const T* row = table + int64_t(ids[blockIdx.x]) * hidden;
  float* o = out + blockIdx.x * hidden;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) o[c] = to_f32(row[c]);
}

// bf16 rows whose width is a multiple of 8: 16-byte loads of 8 values, two 16-byte stores.
__global__ void embed_bf16x8_kernel(const bf16* __restrict__ table, int64_t hidden, const int32_t* __restrict__ ids, float* __restrict__ out) {
  const uint4* row = reinterpret_cast<const uint4*>(table + int64_t(ids[blockIdx.x]) * hidden);
  float4* o = reinterpret_cast<float4*>(out + blockIdx.x * hidden);
  for (int64_t c = threadIdx.x; c < hidden / 8; c += blockDim.x) {
    const uint4 v = row[c];
    const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&v);
    const float2 a = __bfloat1622float2(p[0]), b = __bfloat1622float2(p[1]), d = __bfloat1622float2(p[2]), e = __bfloat1622float2(p[3]);
    o[2 * c] = make_float4(a.x, a.y, b.x, b.y);
    o[2 * c + 1] = make_float4(d.x, d.y, e.x, e.y);
  }
}

template <typename TD>
void launch_norm(float* h, int64_t ldh, const void* delta, int64_t ldd, int64_t rows, int64_t cols, const float* w, float eps,
                 void* out, int64_t ldo, DType ot, cudaStream_t s) {
  const unsigned threads = cols >= 1024 ? 512 : 128;
  const TD* d = static_cast<const TD*>(delta);
  if (ot == DType::BF16)
    rmsnorm_residual_kernel<TD, bf16><<<unsigned(rows), threads, 0, s>>>(h, ldh, d, ldd, cols, w, eps, static_cast<bf16*>(out), ldo);
  else
    rmsnorm_residual_kernel<TD, float><<<unsigned(rows), threads, 0, s>>>(h, ldh, d, ldd, cols, w, eps, static_cast<float*>(out), ldo);
}

}  // namespace

void rmsnorm_residual(float* h, int64_t ldh, const void* delta, int64_t ldd, DType delta_type, int64_t rows, int64_t cols,
                      const float* weight, float eps, void* out, int64_t ldo, DType out_type, cudaStream_t stream) {
  if (rows == 0) return;
  if (delta_type == DType::BF16) launch_norm<bf16>(h, ldh, delta, ldd, rows, cols, weight, eps, out, ldo, out_type, stream);
  else launch_norm<float>(h, ldh, delta, ldd, rows, cols, weight, eps, out, ldo, out_type, stream);
  JAMBA_CUDA_LAUNCHED("rmsnorm_residual");
}

void add_bias(void* x, int64_t ld, DType type, int64_t rows, int64_t cols, const float* bias, cudaStream_t stream) {
  if (rows == 0) return;
  if (type == DType::BF16) add_bias_kernel<<<unsigned(rows), 128, 0, stream>>>(static_cast<bf16*>(x), ld, cols, bias);
  else add_bias_kernel<<<unsigned(rows), 128, 0, stream>>>(static_cast<float*>(x), ld, cols, bias);
  JAMBA_CUDA_LAUNCHED("add_bias");
}

void fill_uniform(void* out, DType type, int64_t n, uint64_t seed, float lo, float hi, cudaStream_t stream) {
  if (n == 0) return;
  if (type == DType::BF16) fill_uniform_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(static_cast<bf16*>(out), n, seed, lo, hi);
  else fill_uniform_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(static_cast<float*>(out), n, seed, lo, hi);
  JAMBA_CUDA_LAUNCHED("fill_uniform");
}

void to_bf16(const float* x, int64_t n, void* out, cudaStream_t stream) {
  if (n == 0) return;
  to_bf16_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(x, n, static_cast<bf16*>(out));
  JAMBA_CUDA_LAUNCHED("to_bf16");
}

void embed_rows(const void* table, DType table_type, int64_t hidden, const int32_t* ids, int64_t n, float* out,
                cudaStream_t stream) {
  if (n == 0) return;
  const bool aligned = reinterpret_cast<uintptr_t>(table) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (table_type == DType::BF16 && hidden % 8 == 0 && aligned)
    embed_bf16x8_kernel<<<unsigned(n), 128, 0, stream>>>(static_cast<const bf16*>(table), hidden, ids, out);
  else if (table_type == DType::BF16) embed_kernel<<<unsigned(n), 128, 0, stream>>>(static_cast<const bf16*>(table), hidden, ids, out);
  else embed_kernel<<<unsigned(n), 128, 0, stream>>>(static_cast<const float*>(table), hidden, ids, out);
  JAMBA_CUDA_LAUNCHED("embed_rows");
}

}  // namespace jamba::cuda
