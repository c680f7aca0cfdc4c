// The grouped GEMM behind the MoE experts (and, with one group, the dense projections):
// out[rows of e] = a[rows of e] · W_e^T on bf16 tensor cores (mma.sync m16n8k16, float32
// accumulation). W_e is bf16, or int8 with a float32 scale per output row (ExpertsInt8): the
// int8 tile is widened to bf16 as it is staged into shared memory, inside the k loop, and the
// scale is applied to the float32 accumulator in the epilogue, with the optional per-row factor
// (the routing weight). Groups live on the device (offsets), so the grid is sized for the worst
// case and each block finds its (expert, row tile) there; blocks past the last tile exit.
//
// The same kernel, with DX, gives the backward of such a product with respect to its input,
// dA[rows of e] = dY[rows of e] · W_e (training through the frozen model): W_e is then read along
// its columns, its tile transposed as it is staged, and an int8 matrix's row scales (one per
// reduction index now) multiply dY as its tile is staged, so the int8 values still widen inside
// the k loop and no dequantized copy of the experts is ever made.
//
// Tiles: 64 rows × 128 columns × 32 k per block of 8 warps (2 × 4, each 32 × 32). The next k tile
// is loaded into registers while the current one is multiplied (one stage of software pipelining).
#include <cstdint>

#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

constexpr int BM = 64, BN = 128, BK = 32, PAD = 8, kThreads = 256;

// DX's weight tile arrives along n and is stored transposed, one bf16 at a time: with a warp's
// lanes on 8 reduction rows × 4 consecutive 8-column chunks (64 contiguous bytes of each W row)
// and a tile row of 42 bf16 (21 words), those stores fall in 16 banks, two lanes to a word
// (conflict-free); a row of 40 would put every chunk's lanes in one bank.
constexpr int PAD_DX = 10;
// Chunk c (of 512) of DX's tile: its reduction row within the tile, and its first column / 8.
__device__ __forceinline__ int dx_row(int c) { return ((c >> 5) & 3) * 8 + ((c & 31) >> 2); }
__device__ __forceinline__ int dx_col8(int c) { return ((c >> 5) >> 2) * 4 + (c & 3); }

// 8 int8 values (one uint2) as 8 bf16 values (one uint4). Exact: |q| ≤ 127 fits bf16.
__device__ __forceinline__ uint4 widen8(uint2 q) {
  const int8_t* v = reinterpret_cast<const int8_t*>(&q);
  __nv_bfloat162 out[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) out[i] = __floats2bfloat162_rn(float(v[2 * i]), float(v[2 * i + 1]));
  return *reinterpret_cast<uint4*>(&out[0]);
}

// N is the output's columns and K the reduction: W_e is [N, K] (forward) or [K, N] (DX).
// `accumulate` adds the result to `out` instead of storing it.
template <bool Int8, bool Vec, bool DX, typename TO>
__global__ void __launch_bounds__(kThreads) grouped_gemm_kernel(const bf16* __restrict__ A, int64_t lda, const void* __restrict__ Wv,
                                                                const float* __restrict__ wscale, int64_t N, int64_t K,
                                                                const int32_t* __restrict__ offsets, int E,
                                                                const float* __restrict__ row_scale, TO* __restrict__ out,
                                                                int64_t ldo, bool accumulate) {
  __shared__ __align__(16) bf16 As[BM][BK + PAD];
  __shared__ __align__(16) bf16 Bs[BN][BK + (DX ? PAD_DX : PAD)];
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
  // two per thread (16 bytes each in bf16, 8 in int8), along k (forward) or along n (DX: 32 rows
  // of W, 16 chunks each, dx_row / dx_col8). With Vec the chunked dimensions are multiples of 8,
  // so a chunk is entirely inside the matrix or entirely past its end.
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
      const int chunk = tid + i * kThreads;
      // The chunk's first element: row `n` of the tile's 128 and reduction index `kk` (forward,
      // 8 consecutive k), or reduction row `kk` and output column `n` (DX, 8 consecutive n).
      const int64_t n = DX ? n0 + dx_col8(chunk) * 8 : n0 + (chunk >> 2);
      const int64_t kk = DX ? k0 + dx_row(chunk) : k0 + (chunk & 3) * 8;
      const size_t at = DX ? size_t(kk) * size_t(N) + size_t(n) : size_t(n) * size_t(K) + size_t(kk);
      auto inside = [&](int j) { return DX ? kk < K && n + j < N : n < N && kk + j < K; };
      if constexpr (Vec) {
        const bool ok = inside(0);
        if constexpr (Int8) rq[i] = ok ? *reinterpret_cast<const uint2*>(W + at) : make_uint2(0, 0);
        else rb[i] = ok ? *reinterpret_cast<const uint4*>(W + at * 2) : make_uint4(0, 0, 0, 0);
      } else if constexpr (Int8) {
        int8_t* e = reinterpret_cast<int8_t*>(&rq[i]);
#pragma unroll
        for (int j = 0; j < 8; ++j) e[j] = inside(j) ? reinterpret_cast<const int8_t*>(W)[at + j] : int8_t(0);
      } else {
        bf16* e = reinterpret_cast<bf16*>(&rb[i]);
#pragma unroll
        for (int j = 0; j < 8; ++j) e[j] = inside(j) ? reinterpret_cast<const bf16*>(W)[at + j] : __float2bfloat16_rn(0.f);
      }
    }
  };
  auto stage = [&](int64_t k0) {
    if constexpr (DX && Int8) {
      // dY · diag(scale_e) · Q_e: the scales of the reduction indices go onto dY's tile.
      bf16* vals = reinterpret_cast<bf16*>(&ra);
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (k0 + a_c + j < K) vals[j] = __float2bfloat16_rn(__bfloat162float(vals[j]) * wscale[size_t(e) * size_t(K) + size_t(k0 + a_c + j)]);
    }
    *reinterpret_cast<uint4*>(&As[a_r][a_c]) = ra;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int chunk = tid + i * kThreads;
      uint4 v;
      if constexpr (Int8) v = widen8(rq[i]);  // the int8 weights become bf16 here, in the k loop
      else v = rb[i];
      if constexpr (DX) {
        // Transposed into the [n][k] tile the fragments read.
        const bf16* vals = reinterpret_cast<const bf16*>(&v);
#pragma unroll
        for (int j = 0; j < 8; ++j) Bs[dx_col8(chunk) * 8 + j][dx_row(chunk)] = vals[j];
      } else {
        *reinterpret_cast<uint4*>(&Bs[chunk >> 2][(chunk & 3) * 8]) = v;
      }
    }
  };

  float acc[2][4][4] = {};
  load(0);
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    __syncthreads();  // everyone is done reading the previous tile
    stage(k0);
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

  // Epilogue: the int8 row scale on the float32 sums (forward), then the per-row factor.
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
          if constexpr (Int8 && !DX) v *= wscale[size_t(e) * N + n];
          TO* o = out + row * ldo + n;
          *o = from_f32<TO>(accumulate ? to_f32(*o) + v * rs : v * rs);
        }
    }
}

}  // namespace

namespace {

// Both products' launcher: N output columns, K the reduction.
void launch(bool dx, const void* a, int64_t lda, const GroupedWeights& w, int64_t N, int64_t K, const int32_t* offsets, int experts,
            int64_t max_rows, const float* row_scale, void* out, int64_t ldo, DType out_type, bool accumulate, cudaStream_t stream) {
  if (max_rows == 0) return;
  if (w.int8 && !w.scale) fail("invalid_argument", "grouped_gemm: int8 weights need their row scales");
  // Every group may leave one partial tile: at most ceil(max_rows / BM) + experts tiles.
  const dim3 grid(blocks_for(N, BN), unsigned((max_rows + BM - 1) / BM + experts));
  const bf16* A = static_cast<const bf16*>(a);
  const bool vec = K % 8 == 0 && lda % 8 == 0 && reinterpret_cast<uintptr_t>(a) % 16 == 0 && (!dx || N % 8 == 0);
  auto go = [&](auto int8, auto v, auto d, auto to) {
    using TO = typename decltype(to)::type;
    grouped_gemm_kernel<decltype(int8)::value, decltype(v)::value, decltype(d)::value, TO><<<grid, kThreads, 0, stream>>>(
        A, lda, w.w, w.scale, N, K, offsets, experts, row_scale, static_cast<TO*>(out), ldo, accumulate);
  };
  auto by_out = [&](auto int8, auto v, auto d) {
    if (out_type == DType::BF16) go(int8, v, d, Tag<bf16>{});
    else go(int8, v, d, Tag<float>{});
  };
  auto by_dx = [&](auto int8, auto v) {
    if (dx) by_out(int8, v, std::true_type{});
    else by_out(int8, v, std::false_type{});
  };
  auto by_vec = [&](auto int8) {
    if (vec) by_dx(int8, std::true_type{});
    else by_dx(int8, std::false_type{});
  };
  if (w.int8) by_vec(std::true_type{});
  else by_vec(std::false_type{});
  JAMBA_CUDA_LAUNCHED(dx ? "grouped_gemm_dx" : "grouped_gemm");
}

}  // namespace

void grouped_gemm(const void* a, int64_t lda, const GroupedWeights& w, const int32_t* offsets, int experts,
                  int64_t max_rows, const float* row_scale, void* out, int64_t ldo, DType out_type, cudaStream_t stream) {
  launch(false, a, lda, w, w.n, w.k, offsets, experts, max_rows, row_scale, out, ldo, out_type, false, stream);
}

void grouped_gemm_dx(const void* dy, int64_t lddy, const GroupedWeights& w, const int32_t* offsets, int experts,
                     int64_t max_rows, const float* row_scale, float* dx, int64_t lddx, bool accumulate, cudaStream_t stream) {
  launch(true, dy, lddy, w, w.k, w.n, offsets, experts, max_rows, row_scale, dx, lddx, DType::F32, accumulate, stream);
}

}  // namespace jamba::cuda
