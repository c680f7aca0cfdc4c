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
// - With a top-k, top-p or min-p cut: a block per row draws by rejection, without sorting
//   (csrc/core/cut_sampling.h, shared with the host so the CPU tests check it): a draw by inverse
//   CDF in id order among the tokens still allowed, accepted when the cuts keep it, else every
//   token ordered after it is dropped and it draws again; a few passes over the row.
#include <cstdint>

#include "../core/cut_sampling.h"
#include "../core/decode_rules.h"
#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

constexpr int kThreads = 1024;

/** Rows drawn by the one-pass path: greedy, or temperature with no top-k or top-p cut. */
__device__ __forceinline__ bool one_pass(const SampleArgs& a, int64_t vocab) {
  return a.temperature <= 0.f || ((a.top_k <= 0 || a.top_k >= vocab) && a.top_p >= 1.f && a.min_p <= 0.f);
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
    uint32_t b[4] = {0, 0, 0, 0};
    if (!greedy) rules::philox(a.seed, a.step, uint32_t(g) + 1u, b);
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

// The row operations of rules::draw_with_cuts for one block: each a pass over the row with
// block-wide reductions in a fixed order, so a row's draw does not depend on the other rows.
class BlockRow {
 public:
  // Scratch in shared memory, given by the kernel: kThreads floats and ids, and one id.
  __device__ BlockRow(const float* x, int64_t n, float* s_v, int64_t* s_i, int32_t* pick) : x_(x), n_(n), s_v_(s_v), s_i_(s_i), pick_(*pick) {}

  __device__ float max_logit() {
    float mx = -INFINITY;
    int64_t arg = n_;
    for (int64_t i = threadIdx.x; i < n_; i += kThreads)
      if (x_[i] > mx) { mx = x_[i]; arg = i; }
    // Argmax with ties to the lower id, kept as the draw's fallback.
    s_v_[threadIdx.x] = mx;
    s_i_[threadIdx.x] = arg;
    __syncthreads();
    for (int o = kThreads / 2; o > 0; o >>= 1) {
      if (int(threadIdx.x) < o) {
        const float ov = s_v_[threadIdx.x + o];
        const int64_t oi = s_i_[threadIdx.x + o];
        if (ov > s_v_[threadIdx.x] || (ov == s_v_[threadIdx.x] && oi < s_i_[threadIdx.x])) {
          s_v_[threadIdx.x] = ov;
          s_i_[threadIdx.x] = oi;
        }
      }
      __syncthreads();
    }
    best_ = int32_t(s_i_[0] < n_ ? s_i_[0] : 0);
    const float top = s_v_[0];
    __syncthreads();
    return top;
  }

  __device__ float logit(int32_t i) const { return x_[i]; }

  template <class A, class B>
  __device__ void sums(A allowed, B before, float inv_t, float top, rules::CutSums& out) {
    float am = 0.f, bm = 0.f, bc = 0.f;  // counts below 2^24 are exact in float32
    for (int64_t i = threadIdx.x; i < n_; i += kThreads) {
      const float x = x_[i], w = expf((x - top) * inv_t);
      if (allowed(int32_t(i), x)) am += w;
      if (before(int32_t(i), x)) { bm += w; bc += 1.f; }
    }
    out.allowed_mass = block_sum(am);
    out.before_mass = block_sum(bm);
    out.before_count = uint32_t(block_sum(bc));
  }

  // Inverse CDF in id order: each thread owns a contiguous range; a block scan finds the range.
  template <class A>
  __device__ int32_t draw(A allowed, float inv_t, float top, float u) {
    const int64_t per = (n_ + kThreads - 1) / kThreads, b0 = threadIdx.x * per, b1 = b0 + per < n_ ? b0 + per : n_;
    float mine = 0.f;
    for (int64_t i = b0; i < b1; ++i)
      if (allowed(int32_t(i), x_[i])) mine += expf((x_[i] - top) * inv_t);
    s_v_[threadIdx.x] = mine;
    __syncthreads();
    for (int o = 1; o < kThreads; o <<= 1) {  // inclusive Hillis-Steele scan
      const float v = int(threadIdx.x) >= o ? s_v_[threadIdx.x - o] : 0.f;
      __syncthreads();
      s_v_[threadIdx.x] += v;
      __syncthreads();
    }
    const float before = threadIdx.x ? s_v_[threadIdx.x - 1] : 0.f;
    if (threadIdx.x == 0) pick_ = best_;  // rounding at the very end falls back to the best token
    __syncthreads();
    if (u >= before && u < s_v_[threadIdx.x] && mine > 0.f) {
      float run = before;
      for (int64_t i = b0; i < b1; ++i) {
        if (!allowed(int32_t(i), x_[i])) continue;
        run += expf((x_[i] - top) * inv_t);
        if (u < run) { pick_ = int32_t(i); break; }
      }
    }
    __syncthreads();
    const int32_t pick = pick_;
    __syncthreads();
    return pick;
  }

  __device__ uint32_t count_at_least(uint32_t key) {
    float c = 0.f;
    for (int64_t i = threadIdx.x; i < n_; i += kThreads) c += rules::ordered_key(x_[i]) >= key ? 1.f : 0.f;
    return uint32_t(block_sum(c));
  }

 private:
  const float* x_;
  int64_t n_;
  float* s_v_;
  int64_t* s_i_;
  int32_t& pick_;
  int32_t best_ = 0;
};

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* __restrict__ logits, int64_t vocab,
                                                          const SampleArgs* __restrict__ args, int32_t* __restrict__ out) {
  const int64_t r = blockIdx.x;
  const SampleArgs a = args[r];
  if (one_pass(a, vocab)) return;  // drawn by one_pass_kernel
  __shared__ float s_v[kThreads];
  __shared__ int64_t s_i[kThreads];
  __shared__ int32_t pick;
  BlockRow row(logits + r * vocab, vocab, s_v, s_i, &pick);
  const int32_t id = rules::draw_with_cuts(row, vocab, rules::Cuts{a.temperature, a.top_k, a.top_p, a.min_p, a.seed, a.step});
  if (threadIdx.x == 0) out[r] = id;
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
