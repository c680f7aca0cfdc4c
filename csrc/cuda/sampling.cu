// Token sampling on the device, so logits never cross to the host while generating (grammar masks
// too: masked logits are set to −∞ before a draw). Every draw uses Philox-4x32-10 keyed by the
// row's seed and counted by its step, so the same seed and step give the same token, whatever else
// runs.
//
// - Greedy and plain temperature sampling (no top-k or top-p cut), the common case: one pass over
//   the row, split among up to 64 blocks. Sampling is the Gumbel-max trick: the argmax of
//   logit / T + Gumbel noise (one noise value per token, from Philox at (step, token)) is a draw
//   from softmax(logit / T); greedy is the argmax without noise. Blocks write their best (value,
//   id), a second kernel keeps the best of those, ties to the lower id (as on the CPU).
// - With a top-k or top-p cut: a block per row finds the cut-offs as thresholds by bisection on
//   the value (each step one block-wide count or sum, no sort) and draws by inverse CDF in id
//   order.
#include <cstdint>

#include "../core/decode_rules.h"
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

// Philox-4x32-10 (Salmon et al., 2011): four 32-bit outputs for counter (step, c2), key from the seed.
__device__ uint4 philox(uint64_t seed, uint64_t step, uint32_t c2_in) {
  uint32_t c0 = uint32_t(step), c1 = uint32_t(step >> 32), c2 = c2_in, c3 = 0;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
#pragma unroll
  for (int i = 0; i < 10; ++i) {
    uint32_t h0, h1;
    const uint32_t l0 = mulhilo(0xD2511F53u, c0, h0), l1 = mulhilo(0xCD9E8D57u, c2, h1);
    const uint32_t n0 = h1 ^ c1 ^ k0, n2 = h0 ^ c3 ^ k1;
    c0 = n0; c1 = l1; c2 = n2; c3 = l0;
    k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
  }
  return make_uint4(c0, c1, c2, c3);
}

__device__ float philox_uniform(uint64_t seed, uint64_t step) {
  return float(philox(seed, step, 0).x >> 8) * (1.0f / 16777216.0f);  // 24 bits: [0, 1)
}

/** Rows drawn by the one-pass path: greedy, or temperature with no top-k or top-p cut. */
__device__ __forceinline__ bool one_pass(const SampleArgs& a, int64_t vocab) {
  return a.temperature <= 0.f || ((a.top_k <= 0 || a.top_k >= vocab) && a.top_p >= 1.f);
}

/** (value, id) pairs: the larger value wins, ties to the lower id. */
__device__ __forceinline__ void keep_best(float& v, int32_t& i, float ov, int32_t oi) {
  if (ov > v || (ov == v && oi < i)) { v = ov; i = oi; }
}

constexpr int kPassThreads = 256, kMaxSplits = 64, kPerSplit = 1024;

__global__ void __launch_bounds__(kPassThreads) one_pass_kernel(const float* __restrict__ logits, int64_t vocab,
                                                                const SampleArgs* __restrict__ args, int splits,
                                                                float* __restrict__ part_v, int32_t* __restrict__ part_i) {
  const int64_t r = blockIdx.y;
  const SampleArgs a = args[r];
  if (!one_pass(a, vocab)) return;
  const float* x = logits + r * vocab;
  const bool greedy = a.temperature <= 0.f;
  const float inv_t = greedy ? 1.f : 1.f / a.temperature;
  // This block's ids, in groups of 4 (one Philox call gives a group's noise).
  const int64_t groups = (vocab + 3) / 4, per = (groups + splits - 1) / splits;
  const int64_t g0 = int64_t(blockIdx.x) * per, g1 = g0 + per < groups ? g0 + per : groups;
  float best = -INFINITY;
  int32_t best_i = INT32_MAX;
  for (int64_t g = g0 + threadIdx.x; g < g1; g += kPassThreads) {
    uint4 bits = make_uint4(0, 0, 0, 0);
    if (!greedy) bits = philox(a.seed, a.step, uint32_t(g) + 1u);
    const uint32_t b[4] = {bits.x, bits.y, bits.z, bits.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = g * 4 + j;
      if (i >= vocab) break;
      const float v = greedy ? x[i] : x[i] * inv_t + rules::gumbel_noise(b[j]);
      keep_best(best, best_i, v, int32_t(i));
    }
  }
  // Warp, then block.
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) keep_best(best, best_i, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, best_i, o));
  __shared__ float s_v[kPassThreads / 32];
  __shared__ int32_t s_i[kPassThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) { s_v[warp] = best; s_i[warp] = best_i; }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kPassThreads / 32; ++w) keep_best(best, best_i, s_v[w], s_i[w]);
    part_v[r * splits + blockIdx.x] = best;
    part_i[r * splits + blockIdx.x] = best_i;
  }
}

__global__ void one_pass_final_kernel(int64_t vocab, const SampleArgs* __restrict__ args, int splits, const float* __restrict__ part_v,
                                      const int32_t* __restrict__ part_i, int32_t* __restrict__ out) {
  const int64_t r = blockIdx.x;
  if (!one_pass(args[r], vocab)) return;
  float best = -INFINITY;
  int32_t best_i = INT32_MAX;
  for (int j = threadIdx.x; j < splits; j += 32) keep_best(best, best_i, part_v[r * splits + j], part_i[r * splits + j]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) keep_best(best, best_i, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, best_i, o));
  if (threadIdx.x == 0) out[r] = best_i < vocab ? best_i : 0;  // every logit −∞ or NaN: token 0
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
  if (one_pass(a, vocab)) return;  // drawn by one_pass_kernel
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

static int splits_for(int64_t vocab) {
  const int64_t s = (vocab + kPerSplit - 1) / kPerSplit;
  return int(s < 1 ? 1 : s > kMaxSplits ? kMaxSplits : s);
}

size_t sample_workspace(int64_t rows) { return size_t(rows) * kMaxSplits * (sizeof(float) + sizeof(int32_t)); }

void sample(const float* logits, int64_t rows, int64_t vocab, const SampleArgs* args, int32_t* out, void* workspace, cudaStream_t stream) {
  if (rows == 0) return;
  const int splits = splits_for(vocab);
  float* part_v = static_cast<float*>(workspace);
  int32_t* part_i = reinterpret_cast<int32_t*>(part_v + rows * splits);
  one_pass_kernel<<<dim3(unsigned(splits), unsigned(rows)), kPassThreads, 0, stream>>>(logits, vocab, args, splits, part_v, part_i);
  one_pass_final_kernel<<<unsigned(rows), 32, 0, stream>>>(vocab, args, splits, part_v, part_i, out);
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
