// RMSNorm with the residual add of the previous sub-layer fused in, and the embedding gather.
// One block per row: the row is read once to add and square, the sum of squares is reduced
// across the block, and the second pass reads the row back from L1/L2 to scale it.
#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

template <typename TD, typename TO>
__global__ void rmsnorm_residual_kernel(float* __restrict__ h, const TD* __restrict__ delta, int64_t cols,
                                        const float* __restrict__ weight, float eps, TO* __restrict__ out) {
  float* hr = h + blockIdx.x * cols;
  const TD* dr = delta ? delta + blockIdx.x * cols : nullptr;
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
  TO* o = out + blockIdx.x * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = from_f32<TO>(hr[c] * inv * weight[c]);
}

template <typename T>
__global__ void embed_kernel(const T* __restrict__ table, int64_t hidden, const int32_t* __restrict__ ids, float* __restrict__ out) {
  const T* row = table + int64_t(ids[blockIdx.x]) * hidden;
  float* o = out + blockIdx.x * hidden;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) o[c] = to_f32(row[c]);
}

template <typename TD>
void launch_norm(float* h, const void* delta, int64_t rows, int64_t cols, const float* w, float eps, void* out, DType ot,
                 cudaStream_t s) {
  const unsigned threads = cols >= 1024 ? 512 : 128;
  if (ot == DType::BF16)
    rmsnorm_residual_kernel<TD, bf16><<<unsigned(rows), threads, 0, s>>>(h, static_cast<const TD*>(delta), cols, w, eps, static_cast<bf16*>(out));
  else
    rmsnorm_residual_kernel<TD, float><<<unsigned(rows), threads, 0, s>>>(h, static_cast<const TD*>(delta), cols, w, eps, static_cast<float*>(out));
}

}  // namespace

void rmsnorm_residual(float* h, const void* delta, DType delta_type, int64_t rows, int64_t cols, const float* weight,
                      float eps, void* out, DType out_type, cudaStream_t stream) {
  if (rows == 0) return;
  if (delta_type == DType::BF16) launch_norm<bf16>(h, delta, rows, cols, weight, eps, out, out_type, stream);
  else launch_norm<float>(h, delta, rows, cols, weight, eps, out, out_type, stream);
  JAMBA_CUDA_LAUNCHED("rmsnorm_residual");
}

void embed_rows(const void* table, DType table_type, int64_t hidden, const int32_t* ids, int64_t n, float* out,
                cudaStream_t stream) {
  if (n == 0) return;
  if (table_type == DType::BF16) embed_kernel<<<unsigned(n), 128, 0, stream>>>(static_cast<const bf16*>(table), hidden, ids, out);
  else embed_kernel<<<unsigned(n), 128, 0, stream>>>(static_cast<const float*>(table), hidden, ids, out);
  JAMBA_CUDA_LAUNCHED("embed_rows");
}

}  // namespace jamba::cuda
