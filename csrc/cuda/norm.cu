// RMSNorm with the residual add of the previous sub-layer fused in, its backward, and the
// embedding gather.
// One block per row. Rows of a width divisible by 4 (every Jamba hidden size) are read once with
// 16-byte loads and held in registers between the sum of squares and the scaling, so the row
// crosses DRAM once each way; other rows take a two-pass scalar loop that reads the row back
// from L1/L2.
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

// 4 consecutive values of a row as float32, and back.
__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load4(const bf16* p) {
  const uint2 v = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ void store4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }
__device__ __forceinline__ void store4(bf16* p, float4 v) {
  __nv_bfloat162 a = __floats2bfloat162_rn(v.x, v.y), b = __floats2bfloat162_rn(v.z, v.w);
  uint2 u;
  u.x = *reinterpret_cast<uint32_t*>(&a);
  u.y = *reinterpret_cast<uint32_t*>(&b);
  *reinterpret_cast<uint2*>(p) = u;
}

// The row in registers: V groups of 4 values per thread (cols ≤ 4 · V · blockDim.x).
template <typename TD, typename TO, int V>
__global__ void rmsnorm_residual_vec_kernel(float* h, int64_t ldh, const TD* __restrict__ delta, int64_t ldd, int64_t cols,
                                            const float* __restrict__ weight, float eps, TO* out, int64_t ldo) {
  float* hr = h + blockIdx.x * ldh;
  const TD* dr = delta ? delta + blockIdx.x * ldd : nullptr;
  const int64_t n4 = cols / 4;
  float4 x[V];
  float ss = 0.f;
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const int64_t i = threadIdx.x + int64_t(v) * blockDim.x;
    if (i >= n4) break;
    x[v] = load4(hr + 4 * i);
    if (dr) {
      const float4 d = load4(dr + 4 * i);
      x[v] = make_float4(x[v].x + d.x, x[v].y + d.y, x[v].z + d.z, x[v].w + d.w);
      store4(hr + 4 * i, x[v]);
    }
    ss += x[v].x * x[v].x + x[v].y * x[v].y + x[v].z * x[v].z + x[v].w * x[v].w;
  }
  const float inv = rsqrtf(block_sum(ss) / float(cols) + eps);
  TO* o = out + blockIdx.x * ldo;
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const int64_t i = threadIdx.x + int64_t(v) * blockDim.x;
    if (i >= n4) break;
    const float4 w = load4(weight + 4 * i);
    store4(o + 4 * i, make_float4(x[v].x * inv * w.x, x[v].y * inv * w.y, x[v].z * inv * w.z, x[v].w * inv * w.w));
  }
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

// The backward of out = x / rms(x) · w with respect to x, one block per row:
// dx = inv · w ⊙ dy − x · inv³ / cols · Σ x ⊙ w ⊙ dy, stored or added to dx (a residual's gradient).
// Two reads of the row (the second from L1/L2): the backward is a small share of a training step.
__global__ void rmsnorm_back_kernel(const float* __restrict__ x, int64_t ldx, int64_t cols, const float* __restrict__ weight,
                                    float eps, const float* __restrict__ dy, int64_t lddy, float* dx, int64_t lddx,
                                    bool accumulate) {
  const float* xr = x + blockIdx.x * ldx;
  const float* gr = dy + blockIdx.x * lddy;
  float ss = 0.f, dot = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = xr[c];
    ss += v * v;
    dot += v * weight[c] * gr[c];
  }
  ss = block_sum(ss);
  dot = block_sum(dot);
  const float inv = rsqrtf(ss / float(cols) + eps), k = inv * inv * inv / float(cols) * dot;
  float* o = dx + blockIdx.x * lddx;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = inv * weight[c] * gr[c] - xr[c] * k;
    o[c] = accumulate ? o[c] + v : v;
  }
}

template <typename TD>
void launch_norm(float* h, int64_t ldh, const void* delta, int64_t ldd, int64_t rows, int64_t cols, const float* w, float eps,
                 void* out, int64_t ldo, DType ot, cudaStream_t s) {
  const unsigned threads = cols >= 1024 ? 512 : 128;
  const TD* d = static_cast<const TD*>(delta);
  const auto a16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const auto a8 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 8 == 0; };
  // 16-byte rows (8 for bf16): every row start aligned, and at most 8 groups of 4 per thread.
  const int64_t groups = (cols / 4 + threads - 1) / threads;
  const bool vec = cols % 4 == 0 && groups <= 8 && a16(h) && ldh % 4 == 0 && a16(w) && (!d || (a8(d) && ldd % 4 == 0)) &&
                   (ot == DType::BF16 ? a8(out) : a16(out)) && ldo % 4 == 0;
  auto go = [&](auto to) {
    using TO = typename decltype(to)::type;
    TO* o = static_cast<TO*>(out);
    if (!vec) rmsnorm_residual_kernel<TD, TO><<<unsigned(rows), threads, 0, s>>>(h, ldh, d, ldd, cols, w, eps, o, ldo);
    else if (groups <= 1) rmsnorm_residual_vec_kernel<TD, TO, 1><<<unsigned(rows), threads, 0, s>>>(h, ldh, d, ldd, cols, w, eps, o, ldo);
    else if (groups <= 2) rmsnorm_residual_vec_kernel<TD, TO, 2><<<unsigned(rows), threads, 0, s>>>(h, ldh, d, ldd, cols, w, eps, o, ldo);
    else if (groups <= 4) rmsnorm_residual_vec_kernel<TD, TO, 4><<<unsigned(rows), threads, 0, s>>>(h, ldh, d, ldd, cols, w, eps, o, ldo);
    else rmsnorm_residual_vec_kernel<TD, TO, 8><<<unsigned(rows), threads, 0, s>>>(h, ldh, d, ldd, cols, w, eps, o, ldo);
  };
  if (ot == DType::BF16) go(Tag<bf16>{});
  else go(Tag<float>{});
}

}  // namespace

void rmsnorm_residual(float* h, int64_t ldh, const void* delta, int64_t ldd, DType delta_type, int64_t rows, int64_t cols,
                      const float* weight, float eps, void* out, int64_t ldo, DType out_type, cudaStream_t stream) {
  if (rows == 0) return;
  if (delta_type == DType::BF16) launch_norm<bf16>(h, ldh, delta, ldd, rows, cols, weight, eps, out, ldo, out_type, stream);
  else launch_norm<float>(h, ldh, delta, ldd, rows, cols, weight, eps, out, ldo, out_type, stream);
  JAMBA_CUDA_LAUNCHED("rmsnorm_residual");
}

void rmsnorm_back(const float* x, int64_t ldx, int64_t rows, int64_t cols, const float* weight, float eps, const float* dy,
                  int64_t lddy, float* dx, int64_t lddx, bool accumulate, cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_back_kernel<<<unsigned(rows), cols >= 1024 ? 512 : 128, 0, stream>>>(x, ldx, cols, weight, eps, dy, lddy, dx, lddx, accumulate);
  JAMBA_CUDA_LAUNCHED("rmsnorm_back");
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
