// Token sampling on the device, so logits never cross to the host while generating (grammar masks
// too: masked logits are set to −∞ before a draw). A block per
// row: greedy is an argmax (ties to the lower id, as on the CPU). Otherwise the top-k and top-p
// cut-offs are found as thresholds by bisection on the value (each step one block-wide count or
// sum over the row, no sort), and the token is drawn by inverse CDF in id order with a uniform
// number from Philox-4x32-10 keyed by (seed, row) and counted by step: the same seed and step
// give the same token, whatever else runs.
#include <cstdint>

#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

constexpr int kThreads = 1024;

__device__ __forceinline__ uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t& hi) {
  const uint64_t p = uint64_t(a) * b;
  hi = uint32_t(p >> 32);
  return uint32_t(p);
}

// Philox-4x32-10 (Salmon et al., 2011): counter (step), key from the seed.
__device__ float philox_uniform(uint64_t seed, uint64_t step) {
  uint32_t c0 = uint32_t(step), c1 = uint32_t(step >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
#pragma unroll
  for (int i = 0; i < 10; ++i) {
    uint32_t h0, h1;
    const uint32_t l0 = mulhilo(0xD2511F53u, c0, h0), l1 = mulhilo(0xCD9E8D57u, c2, h1);
    const uint32_t n0 = h1 ^ c1 ^ k0, n2 = h0 ^ c3 ^ k1;
    c0 = n0; c1 = l1; c2 = n2; c3 = l0;
    k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
  }
  return float(c0 >> 8) * (1.0f / 16777216.0f);  // 24 bits: [0, 1)
}

__device__ float block_max(float v) {
  __shared__ float part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  v = lane < int(blockDim.x >> 5) ? part[lane] : -INFINITY;
  return warp_max(v);
}

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* __restrict__ logits, int64_t vocab,
                                                          const SampleArgs* __restrict__ args, int32_t* __restrict__ out) {
  const int64_t r = blockIdx.x;
  const SampleArgs a = args[r];
  const float* x = logits + r * vocab;
  float mx = -INFINITY, mn = INFINITY;
  int64_t arg = vocab;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float v = x[i];
    if (v > mx) { mx = v; arg = i; }
    mn = fminf(mn, v);
  }
  // Argmax with ties to the lower id: reduce (value, -id) pairs.
  __shared__ float s_v[kThreads];
  __shared__ int64_t s_i[kThreads];
  s_v[threadIdx.x] = mx;
  s_i[threadIdx.x] = arg;
  __syncthreads();
  for (int o = kThreads / 2; o > 0; o >>= 1) {
    if (int(threadIdx.x) < o) {
      const float ov = s_v[threadIdx.x + o];
      const int64_t oi = s_i[threadIdx.x + o];
      if (ov > s_v[threadIdx.x] || (ov == s_v[threadIdx.x] && oi < s_i[threadIdx.x])) {
        s_v[threadIdx.x] = ov;
        s_i[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  const float top = s_v[0];
  if (a.temperature <= 0.f) {
    if (threadIdx.x == 0) out[r] = int32_t(s_i[0]);
    return;
  }
  mn = -block_max(-mn);
  const float inv_t = 1.f / a.temperature;
  auto prob = [&](float v) { return expf((v - top) * inv_t); };

  // Top-k: the largest threshold keeping at least k ids (bisection on the logit value).
  float lo = mn, hi = top;
  if (a.top_k > 0 && a.top_k < vocab) {
    for (int it = 0; it < 40; ++it) {
      const float mid = 0.5f * (lo + hi);
      float cnt = 0.f;
      for (int64_t i = threadIdx.x; i < vocab; i += kThreads) cnt += x[i] >= mid ? 1.f : 0.f;
      cnt = block_sum(cnt);
      if (cnt >= float(a.top_k)) lo = mid; else hi = mid;
    }
  } else {
    hi = lo;
  }
  float cut = lo;  // keep x ≥ cut
  float total = 0.f;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) total += x[i] >= cut ? prob(x[i]) : 0.f;
  total = block_sum(total);
  // Top-p: the largest threshold whose kept mass is still ≥ top_p of the total.
  if (a.top_p < 1.f) {
    float plo = cut, phi = top;
    for (int it = 0; it < 40; ++it) {
      const float mid = 0.5f * (plo + phi);
      float mass = 0.f;
      for (int64_t i = threadIdx.x; i < vocab; i += kThreads) mass += x[i] >= mid ? prob(x[i]) : 0.f;
      mass = block_sum(mass);
      if (mass >= a.top_p * total) plo = mid; else phi = mid;
    }
    cut = plo;
    total = 0.f;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) total += x[i] >= cut ? prob(x[i]) : 0.f;
    total = block_sum(total);
  }
  // Inverse CDF in id order: each thread owns a contiguous range; a block scan finds the range.
  const float u = philox_uniform(a.seed, a.step) * total;
  const int64_t per = (vocab + kThreads - 1) / kThreads, b0 = threadIdx.x * per, b1 = b0 + per < vocab ? b0 + per : vocab;
  float mine = 0.f;
  for (int64_t i = b0; i < b1; ++i) mine += x[i] >= cut ? prob(x[i]) : 0.f;
  __shared__ float s_scan[kThreads];
  s_scan[threadIdx.x] = mine;
  __syncthreads();
  for (int o = 1; o < kThreads; o <<= 1) {  // inclusive Hillis-Steele scan
    const float v = int(threadIdx.x) >= o ? s_scan[threadIdx.x - o] : 0.f;
    __syncthreads();
    s_scan[threadIdx.x] += v;
    __syncthreads();
  }
  const float before = threadIdx.x ? s_scan[threadIdx.x - 1] : 0.f;
  __shared__ int32_t s_pick;
  if (threadIdx.x == 0) s_pick = int32_t(s_i[0]);  // rounding at the very end falls back to the argmax
  __syncthreads();
  if (u >= before && u < s_scan[threadIdx.x] && mine > 0.f) {
    float run = before;
    for (int64_t i = b0; i < b1; ++i) {
      if (x[i] < cut) continue;
      run += prob(x[i]);
      if (u < run) { s_pick = int32_t(i); break; }
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) out[r] = s_pick;
}

__global__ void mask_kernel(float* __restrict__ logits, int64_t vocab, int64_t words, const uint32_t* __restrict__ bits) {
  const int64_t r = blockIdx.y, i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= vocab) return;
  if (!((bits[r * words + (i >> 5)] >> (i & 31)) & 1u)) logits[r * vocab + i] = -INFINITY;
}

__global__ void quantize_kernel(const bf16* __restrict__ w, int64_t k, int8_t* __restrict__ q, float* __restrict__ scale) {
  const bf16* row = w + blockIdx.x * k;
  float amax = 0.f;
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x) amax = fmaxf(amax, fabsf(__bfloat162float(row[j])));
  amax = block_max(amax);
  const float s = amax / 127.0f;
  if (threadIdx.x == 0) scale[blockIdx.x] = s;
  int8_t* qr = q + blockIdx.x * k;
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
    float v = s > 0.f ? rintf(__bfloat162float(row[j]) / s) : 0.f;  // round half to even, as on the CPU
    qr[j] = int8_t(fminf(127.f, fmaxf(-127.f, v)));
  }
}

}  // namespace

void sample(const float* logits, int64_t rows, int64_t vocab, const SampleArgs* args, int32_t* out, cudaStream_t stream) {
  if (rows == 0) return;
  sample_kernel<<<unsigned(rows), kThreads, 0, stream>>>(logits, vocab, args, out);
  JAMBA_CUDA_LAUNCHED("sample");
}

void mask_logits(float* logits, int64_t rows, int64_t vocab, const uint32_t* bits, cudaStream_t stream) {
  if (rows == 0) return;
  mask_kernel<<<dim3(blocks_for(vocab, 256), unsigned(rows)), 256, 0, stream>>>(logits, vocab, (vocab + 31) / 32, bits);
  JAMBA_CUDA_LAUNCHED("mask_logits");
}

void quantize_int8_rows(const void* w, int64_t rows, int64_t k, int8_t* q, float* scale, cudaStream_t stream) {
  if (rows == 0) return;
  quantize_kernel<<<unsigned(rows), 256, 0, stream>>>(static_cast<const bf16*>(w), k, q, scale);
  JAMBA_CUDA_LAUNCHED("quantize_int8_rows");
}

}  // namespace jamba::cuda
