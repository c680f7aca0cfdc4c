// The cross-entropy head's pieces for training through the frozen model: per target row, the
// loss from its logits and the gradient of the loss with respect to them, and the input-row
// gradients put back on the rows they came from. The head's two products around these are the
// grouped GEMM's (logits = x·Wᵀ, then dx = dlogits·W), run over a chunk of target rows at a
// time so that no more than a chunk's logits ever exist.
#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

constexpr int kThreads = 1024;

// One block per row: lse = logsumexp(z), loss = w·(lse − z[id]), dz = w·(softmax(z) − onehot(id)).
__global__ void __launch_bounds__(kThreads) cross_entropy_kernel(const float* __restrict__ logits, int64_t vocab, const int32_t* __restrict__ ids,
                                                                 const float* __restrict__ weights, float* __restrict__ loss,
                                                                 bf16* __restrict__ dlogits) {
  const int64_t r = blockIdx.x;
  const float* z = logits + r * vocab;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) m = fmaxf(m, z[i]);
  m = block_max(m);
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) s += expf(z[i] - m);
  s = block_sum(s);
  const float lse = m + logf(s), w = weights[r];
  const int32_t id = ids[r];
  if (threadIdx.x == 0) loss[r] = w * (lse - z[id]);
  bf16* d = dlogits + r * vocab;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) d[i] = from_f32<bf16>(w * (expf(z[i] - lse) - (i == id ? 1.f : 0.f)));
}

// dst[rows[i]] += src[i] in the order of i (rows may repeat): a thread per column.
__global__ void scatter_add_kernel(const float* __restrict__ src, int64_t n, int64_t cols, const int32_t* __restrict__ rows,
                                   float* __restrict__ dst) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (int64_t i = 0; i < n; ++i) dst[int64_t(rows[i]) * cols + c] += src[i * cols + c];
}

}  // namespace

void cross_entropy_rows(const float* logits, int64_t rows, int64_t vocab, const int32_t* ids, const float* weights, float* loss,
                        void* dlogits, cudaStream_t stream) {
  if (rows == 0) return;
  cross_entropy_kernel<<<unsigned(rows), kThreads, 0, stream>>>(logits, vocab, ids, weights, loss, static_cast<bf16*>(dlogits));
  JAMBA_CUDA_LAUNCHED("cross_entropy_rows");
}

void scatter_add_rows(const float* src, int64_t n, int64_t cols, const int32_t* rows, float* dst, cudaStream_t stream) {
  if (n == 0) return;
  scatter_add_kernel<<<blocks_for(cols, 256), 256, 0, stream>>>(src, n, cols, rows, dst);
  JAMBA_CUDA_LAUNCHED("scatter_add_rows");
}

}  // namespace jamba::cuda
