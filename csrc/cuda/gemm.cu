// The grouped GEMM behind the MoE experts (and, with one group, the dense projections):
// out[rows of e] = a[rows of e] · W_e^T on bf16 tensor cores (mma.sync m16n8k16, float32
// accumulation). W_e is bf16, or int8 with a float32 scale per output row (ExpertsInt8): the
// int8 tile is widened to bf16 as it is staged into shared memory, inside the k loop, and the
// scale is applied to the float32 accumulator in the epilogue, with the optional per-row factor
// (the routing weight). Groups live on the device (offsets), so the grid is sized for the worst
// case and each block finds its (expert, row tile) there; blocks past the last tile exit.
//
// Tiles: 64 rows × 128 columns × 32 k per block of 8 warps (2 × 4, each 32 × 32). The next k tile
// is loaded into registers while the current one is multiplied (one stage of software pipelining).
#include <cstdint>

#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

constexpr int BM = 64, BN = 128, BK = 32, PAD = 8, kThreads = 256;

// 8 int8 values (one uint2) as 8 bf16 values (one uint4). Exact: |q| ≤ 127 fits bf16.
__device__ __forceinline__ uint4 widen8(uint2 q) {
  const int8_t* v = reinterpret_cast<const int8_t*>(&q);
  __nv_bfloat162 out[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) out[i] = __floats2bfloat162_rn(float(v[2 * i]), float(v[2 * i + 1]));
  return *reinterpret_cast<uint4*>(&out[0]);
}

template <bool Int8, bool Vec, typename TO>
__global__ void __launch_bounds__(kThreads) grouped_gemm_kernel(const bf16* __restrict__ A, int64_t lda, const void* __restrict__ Wv,
                                                                const float* __restrict__ wscale, int64_t N, int64_t K,
                                                                const int32_t* __restrict__ offsets, int E,
                                                                const float* __restrict__ row_scale, TO* __restrict__ out,
                                                                int64_t ldo) {
  __shared__ __align__(16) bf16 As[BM][BK + PAD];
  __shared__ __align__(16) bf16 Bs[BN][BK + PAD];
  __shared__ int s_expert, s_row0, s_rows;

  // Which expert and row tile this block computes.
  if (threadIdx.x == 0) {
    int tile = blockIdx.y, e = 0;
    s_expert = -1;
    for (; e < E; ++e) {
      const int rows = offsets[e + 1] - offsets[e];
      const int tiles = (rows + BM - 1) / BM;
      if (tile < tiles) {
        s_expert = e;
        s_row0 = offsets[e] + tile * BM;
        s_rows = rows - tile * BM < BM ? rows - tile * BM : BM;
        break;
      }
      tile -= tiles;
    }
  }
  __syncthreads();
  const int e = s_expert;
  if (e < 0) return;
  const int row0 = s_row0, rows = s_rows;
  const int64_t n0 = int64_t(blockIdx.x) * BN;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = (warp >> 2) * 32, wn = (warp & 3) * 32;  // this warp's 32 × 32 within the tile
  const int g = lane >> 2, tq = lane & 3;

  // Staging assignments: A is 64 × 32 bf16 = 256 chunks of 8; W is 128 × 32 = 512 chunks of 8,
  // two per thread (16 bytes each in bf16, 8 in int8). K is a multiple of 8, so a chunk is
  // entirely inside the matrix or entirely past its end.
  const int a_r = tid >> 2, a_c = (tid & 3) * 8;
  const bf16* a_src = A + int64_t(row0 + a_r) * lda + a_c;
  const bool a_ok = a_r < rows;
  const uint8_t* Wb = static_cast<const uint8_t*>(Wv);
  const size_t esz = Int8 ? 1 : 2;
  const uint8_t* W = Wb + size_t(e) * size_t(N) * size_t(K) * esz;

  uint4 ra = make_uint4(0, 0, 0, 0), rb[2] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
  uint2 rq[2] = {make_uint2(0, 0), make_uint2(0, 0)};
  // Vec: 16-byte (8-byte for int8) loads of whole chunks. Otherwise (k or lda not a multiple of
  // 8: a Mamba dt_rank, say) element by element, each element checked against k.
  auto load = [&](int64_t k0) {
    if constexpr (Vec) {
      ra = a_ok && k0 + a_c < K ? *reinterpret_cast<const uint4*>(a_src + k0) : make_uint4(0, 0, 0, 0);
    } else {
      bf16* e = reinterpret_cast<bf16*>(&ra);
#pragma unroll
      for (int j = 0; j < 8; ++j) e[j] = a_ok && k0 + a_c + j < K ? a_src[k0 + j] : __float2bfloat16_rn(0.f);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int chunk = tid + i * kThreads, r = chunk >> 2, c = (chunk & 3) * 8;
      const int64_t n = n0 + r;
      if constexpr (Vec) {
        const bool ok = n < N && k0 + c < K;
        if constexpr (Int8) rq[i] = ok ? *reinterpret_cast<const uint2*>(W + size_t(n) * K + k0 + c) : make_uint2(0, 0);
        else rb[i] = ok ? *reinterpret_cast<const uint4*>(W + (size_t(n) * K + k0 + c) * 2) : make_uint4(0, 0, 0, 0);
      } else if constexpr (Int8) {
        int8_t* e = reinterpret_cast<int8_t*>(&rq[i]);
#pragma unroll
        for (int j = 0; j < 8; ++j) e[j] = n < N && k0 + c + j < K ? reinterpret_cast<const int8_t*>(W)[size_t(n) * K + k0 + c + j] : int8_t(0);
      } else {
        bf16* e = reinterpret_cast<bf16*>(&rb[i]);
#pragma unroll
        for (int j = 0; j < 8; ++j) e[j] = n < N && k0 + c + j < K ? reinterpret_cast<const bf16*>(W)[size_t(n) * K + k0 + c + j] : __float2bfloat16_rn(0.f);
      }
    }
  };
  auto stage = [&]() {
    *reinterpret_cast<uint4*>(&As[a_r][a_c]) = ra;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int chunk = tid + i * kThreads;
      uint4 v;
      if constexpr (Int8) v = widen8(rq[i]);  // the int8 weights become bf16 here, in the k loop
      else v = rb[i];
      *reinterpret_cast<uint4*>(&Bs[chunk >> 2][(chunk & 3) * 8]) = v;
    }
  };

  float acc[2][4][4] = {};
  load(0);
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    __syncthreads();  // everyone is done reading the previous tile
    stage();
    __syncthreads();
    if (k0 + BK < K) load(k0 + BK);  // in flight while the tensor cores work
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t af[2][4], bfr[4][2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int r = wm + i * 16 + g;
        af[i][0] = *reinterpret_cast<const uint32_t*>(&As[r][kk + tq * 2]);
        af[i][1] = *reinterpret_cast<const uint32_t*>(&As[r + 8][kk + tq * 2]);
        af[i][2] = *reinterpret_cast<const uint32_t*>(&As[r][kk + tq * 2 + 8]);
        af[i][3] = *reinterpret_cast<const uint32_t*>(&As[r + 8][kk + tq * 2 + 8]);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int n = wn + j * 8 + g;
        bfr[j][0] = *reinterpret_cast<const uint32_t*>(&Bs[n][kk + tq * 2]);
        bfr[j][1] = *reinterpret_cast<const uint32_t*>(&Bs[n][kk + tq * 2 + 8]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) mma_bf16(acc[i][j], af[i], bfr[j]);
    }
  }

  // Epilogue: the int8 row scale on the float32 sums, then the per-row factor.
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = wm + i * 16 + g + h * 8;
      if (r >= rows) continue;
      const int64_t row = row0 + r;
      const float rs = row_scale ? row_scale[row] : 1.f;
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int q = 0; q < 2; ++q) {
          const int64_t n = n0 + wn + j * 8 + tq * 2 + q;
          if (n >= N) continue;
          float v = acc[i][j][h * 2 + q];
          if constexpr (Int8) v *= wscale[size_t(e) * N + n];
          out[row * ldo + n] = from_f32<TO>(v * rs);
        }
    }
}

}  // namespace

void grouped_gemm(const void* a, int64_t lda, const GroupedWeights& w, const int32_t* offsets, int experts,
                  int64_t max_rows, const float* row_scale, void* out, int64_t ldo, DType out_type, cudaStream_t stream) {
  if (max_rows == 0) return;
  if (w.int8 && !w.scale) fail("invalid_argument", "grouped_gemm: int8 weights need their row scales");
  // Every group may leave one partial tile: at most ceil(max_rows / BM) + experts tiles.
  const dim3 grid(blocks_for(w.n, BN), unsigned((max_rows + BM - 1) / BM + experts));
  const bf16* A = static_cast<const bf16*>(a);
  const bool vec = w.k % 8 == 0 && lda % 8 == 0 && reinterpret_cast<uintptr_t>(a) % 16 == 0;
  auto go = [&](auto int8, auto v, auto to) {
    using TO = typename decltype(to)::type;
    grouped_gemm_kernel<decltype(int8)::value, decltype(v)::value, TO><<<grid, kThreads, 0, stream>>>(
        A, lda, w.w, w.scale, w.n, w.k, offsets, experts, row_scale, static_cast<TO*>(out), ldo);
  };
  auto by_out = [&](auto int8, auto v) {
    if (out_type == DType::BF16) go(int8, v, Tag<bf16>{});
    else go(int8, v, Tag<float>{});
  };
  auto by_vec = [&](auto int8) {
    if (vec) by_out(int8, std::true_type{});
    else by_out(int8, std::false_type{});
  };
  if (w.int8) by_vec(std::true_type{});
  else by_vec(std::false_type{});
  JAMBA_CUDA_LAUNCHED("grouped_gemm");
}

}  // namespace jamba::cuda
