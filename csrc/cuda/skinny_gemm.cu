// The weight-streaming GEMM of decode: at most a few rows of activations per weight matrix
// (kSkinnyRows), so the whole cost is reading W once, and the kernel is built around that
// (llama.cpp's mmvf/mmvq, TensorRT-LLM's weightOnlyBatchedGemv):
//
// - A block of 4 warps owns NC output columns of one matrix (one expert); its 128 threads split
//   K among themselves, each reading 16 bytes of every column per step (8 bf16 or 16 int8
//   weights), U steps issued before any is used, so enough loads are in flight to cover DRAM
//   latency even where N is small (the Mamba x_proj: 8192 → 288). Splitting K inside the block
//   instead of across blocks keeps the sum deterministic with no workspace.
// - Weights are read with streaming loads (they are used once per step); the activations, at most
//   16 rows, come through L1 and are reused across the block's NC columns.
// - int8 weights are widened in registers by the byte-permute trick (exact: 2^23 + (q + 128),
//   minus 2^23 + 128 in float32, 2 instructions instead of a slow integer conversion); the row
//   scale multiplies the float32 sum afterwards, as ExpertsInt8 defines it.
// - The grid's y dimension runs over the *active* experts only (the compact list routing made).
// - The SiLU gate of a merged gate|up matrix can be fused: a block then owns NC/2 gate columns and
//   the NC/2 up columns that pair with them, and writes silu(g)·u.
//
// A row's result depends only on K, the weights and that row: every (row, column) sum is formed
// in the same order (each thread over its k-chunks ascending, then a fixed warp and block
// reduction) whatever the number of rows, the column grouping or the unroll, so a sequence
// decodes to the same bits alone or in a batch.
#include <algorithm>
#include <cstdint>

#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

constexpr int kThreads = 128, kWarps = kThreads / 32;

// 16 bytes of weights as float32: 8 bf16 values, or 16 int8 values.
template <bool Int8> constexpr int kChunk = Int8 ? 16 : 8;

__device__ __forceinline__ void widen(const uint4& v, float* f, std::false_type /* bf16 */) { bf16x8_to_f32(v, f); }

__device__ __forceinline__ void widen(const uint4& v, float* f, std::true_type /* int8 */) {
  const uint32_t* w = reinterpret_cast<const uint32_t*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t biased = w[i] ^ 0x80808080u;  // q + 128 as unsigned bytes
#pragma unroll
    for (int b = 0; b < 4; ++b)
      f[4 * i + b] = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7540u | unsigned(b))) - 8388736.f;
  }
}

// CH consecutive bf16 activations as float32 (CH / 8 16-byte loads through L1).
template <int CH>
__device__ __forceinline__ void load_act(const bf16* p, float* f) {
#pragma unroll
  for (int i = 0; i < CH / 8; ++i) widen(__ldg(reinterpret_cast<const uint4*>(p) + i), f + 8 * i, std::false_type{});
}

struct SkinnyParams {
  const bf16* a; int64_t lda;
  const void* w; const float* wscale;
  int64_t n, k;
  const int32_t* offsets; const int32_t* active;
  const float* row_scale;
  bool gated;             // columns j and n/2 + j pair into silu(g)·u at output column j
  void* out; int64_t ldo;
};

template <bool Int8, bool Vec, int MR, int NC, int U, typename TO>
__global__ void __launch_bounds__(kThreads) skinny_gemm_kernel(const SkinnyParams p) {
  const int e = p.active ? p.active[blockIdx.y] : int(blockIdx.y);
  if (e < 0) return;
  const int row_begin = p.offsets[e], row_end = p.offsets[e + 1];
  if (row_begin >= row_end) return;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t N = p.n, K = p.k;

  // The block's columns: NC consecutive ones, or NC/2 gate columns and their up partners.
  const int64_t cols = p.gated ? N / 2 : N;
  const int64_t c0 = int64_t(blockIdx.x) * (p.gated ? NC / 2 : NC);
  // Column c of the block (its row of W), and whether it exists.
  auto column = [&](int c) { return p.gated ? (c >= NC / 2 ? cols : 0) + c0 + c % (NC / 2) : c0 + c; };
  auto exists = [&](int c) { return (p.gated ? c0 + c % (NC / 2) : c0 + c) < cols; };
  int64_t col[NC];
  bool ok[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    ok[c] = exists(c);
    col[c] = column(c);
  }
  const size_t esz = Int8 ? 1 : 2;
  const uint8_t* W = static_cast<const uint8_t*>(p.w) + size_t(e) * size_t(N) * size_t(K) * esz;
  // The int8 row scales, loaded before the weight stream rather than after its reduction, so
  // their DRAM round trip overlaps it.
  float scale[NC];
#pragma unroll
  for (int c = 0; c < NC; ++c) scale[c] = Int8 && ok[c] ? p.wscale[size_t(e) * size_t(N) + size_t(col[c])] : 0.f;

  __shared__ float part[kWarps][MR * NC];
  __shared__ float total[MR * NC];

  // More rows than MR (never on the executor's path, which sizes MR for the batch) take several
  // passes over the weights.
  for (int r0 = row_begin; r0 < row_end; r0 += MR) {
    const int rows = row_end - r0 < MR ? row_end - r0 : MR;
    float acc[MR][NC];
#pragma unroll
    for (int m = 0; m < MR; ++m)
#pragma unroll
      for (int c = 0; c < NC; ++c) acc[m][c] = 0.f;

    if constexpr (Vec) {
      constexpr int CH = kChunk<Int8>;
      const int64_t chunks = K / CH;
      const uint4* wrow[NC];
#pragma unroll
      for (int c = 0; c < NC; ++c) wrow[c] = reinterpret_cast<const uint4*>(W + size_t(ok[c] ? col[c] : 0) * size_t(K) * esz);
      for (int64_t q0 = tid; q0 < chunks; q0 += int64_t(kThreads) * U) {
        uint4 wv[U][NC];
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int64_t q = q0 + int64_t(u) * kThreads;
#pragma unroll
          for (int c = 0; c < NC; ++c) wv[u][c] = q < chunks && ok[c] ? __ldcs(wrow[c] + q) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int64_t q = q0 + int64_t(u) * kThreads;
          if (q < chunks) {
            float wf[NC][CH];
#pragma unroll
            for (int c = 0; c < NC; ++c) widen(wv[u][c], wf[c], std::integral_constant<bool, Int8>{});
#pragma unroll
            for (int m = 0; m < MR; ++m) {
              if (m < rows) {
                float af[CH];
                load_act<CH>(p.a + int64_t(r0 + m) * p.lda + q * CH, af);
#pragma unroll
                for (int c = 0; c < NC; ++c)
#pragma unroll
                  for (int j = 0; j < CH; ++j) acc[m][c] = fmaf(af[j], wf[c][j], acc[m][c]);
              }
            }
          }
        }
      }
    } else {
      // K or the activations' stride is not a multiple of 16 bytes (a Mamba dt_rank, say):
      // element by element, with the same fixed order per thread.
      for (int64_t k = tid; k < K; k += kThreads) {
        float wf[NC];
#pragma unroll
        for (int c = 0; c < NC; ++c) {
          if constexpr (Int8) wf[c] = ok[c] ? float(reinterpret_cast<const int8_t*>(W)[size_t(col[c]) * K + k]) : 0.f;
          else wf[c] = ok[c] ? __bfloat162float(reinterpret_cast<const bf16*>(W)[size_t(col[c]) * K + k]) : 0.f;
        }
#pragma unroll
        for (int m = 0; m < MR; ++m) {
          if (m < rows) {
            const float av = __bfloat162float(p.a[int64_t(r0 + m) * p.lda + k]);
#pragma unroll
            for (int c = 0; c < NC; ++c) acc[m][c] = fmaf(av, wf[c], acc[m][c]);
          }
        }
      }
    }

    // Fixed-order reduction: within each warp, then the 4 warps in order; only rows that exist
    // (`rows` is the same for the whole block, so no lane leaves a shuffle).
#pragma unroll
    for (int m = 0; m < MR; ++m) {
      if (m >= rows) break;
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const float v = warp_sum(acc[m][c]);
        if (lane == 0) part[warp][m * NC + c] = v;
      }
    }
    __syncthreads();
    for (int i = tid; i < rows * NC; i += kThreads) {
      float v = part[0][i];
#pragma unroll
      for (int w = 1; w < kWarps; ++w) v += part[w][i];
      if constexpr (Int8) {
#pragma unroll
        for (int c = 0; c < NC; ++c)
          if (c == i % NC) v *= scale[c];  // a register per column, picked without local memory
      }
      total[i] = v;
    }
    __syncthreads();
    TO* out = static_cast<TO*>(p.out);
    for (int i = tid; i < rows * NC; i += kThreads) {
      const int m = i / NC, c = i % NC;
      if (!exists(c) || (p.gated && c >= NC / 2)) continue;
      const int64_t row = r0 + m;
      float v = p.gated ? silu(total[i]) * total[i + NC / 2] : total[i];
      if (p.row_scale) v *= p.row_scale[row];
      out[row * p.ldo + column(c)] = from_f32<TO>(v);
    }
    __syncthreads();  // part and total are reused by the next pass
  }
}

// The configurations: MR rows of accumulators, NC columns per block (more columns reuse each
// activation load more, fewer give more blocks), U chunks in flight per column.
template <bool Int8, bool Vec, typename TO>
void launch(const SkinnyParams& p, int64_t max_group_rows, unsigned groups, cudaStream_t stream) {
  auto go = [&](auto mr, auto nc, auto u) {
    constexpr int MR = decltype(mr)::value, NC = decltype(nc)::value, U = decltype(u)::value;
    const int64_t cols = p.gated ? p.n / 2 : p.n;
    const dim3 grid(blocks_for(cols, p.gated ? NC / 2 : NC), groups);
    skinny_gemm_kernel<Int8, Vec, MR, NC, U, TO><<<grid, kThreads, 0, stream>>>(p);
  };
  using I = std::integral_constant<int, 1>;
  using II = std::integral_constant<int, 2>;
  using IV = std::integral_constant<int, 4>;
  using XVI = std::integral_constant<int, 16>;
  if (max_group_rows <= 1) go(I{}, II{}, IV{});
  else if (max_group_rows <= 4) go(IV{}, IV{}, II{});
  else go(XVI{}, IV{}, I{});
}

}  // namespace

void skinny_gemm(const void* a, int64_t lda, const GroupedWeights& w, const int32_t* offsets, const int32_t* active,
                 int experts, int64_t max_rows, int64_t max_group_rows, const float* row_scale, bool silu_gate, void* out,
                 int64_t ldo, DType out_type, cudaStream_t stream) {
  if (max_rows == 0 || max_group_rows == 0) return;
  if (w.int8 && !w.scale) fail("invalid_argument", "skinny_gemm: int8 weights need their row scales");
  if (silu_gate && w.n % 2 != 0) fail("invalid_argument", "skinny_gemm: a gated product needs an even number of columns");
  if (experts > 1 && !active) fail("invalid_argument", "skinny_gemm: several experts need the list of active ones");
  SkinnyParams p{static_cast<const bf16*>(a), lda, w.w, w.scale, w.n, w.k, offsets, experts > 1 ? active : nullptr,
                 row_scale, silu_gate, out, ldo};
  // No more experts are active than there are rows.
  const unsigned groups = unsigned(experts > 1 ? std::min<int64_t>(experts, max_rows) : 1);
  const int64_t chunk = w.int8 ? 16 : 8;
  const bool vec = w.k % chunk == 0 && lda % 8 == 0 && reinterpret_cast<uintptr_t>(a) % 16 == 0;
  auto by_out = [&](auto int8, auto v) {
    constexpr bool I8 = decltype(int8)::value, V = decltype(v)::value;
    if (out_type == DType::BF16) launch<I8, V, bf16>(p, max_group_rows, groups, stream);
    else launch<I8, V, float>(p, max_group_rows, groups, stream);
  };
  auto by_vec = [&](auto int8) {
    if (vec) by_out(int8, std::true_type{});
    else by_out(int8, std::false_type{});
  };
  if (w.int8) by_vec(std::true_type{});
  else by_vec(std::false_type{});
  JAMBA_CUDA_LAUNCHED("skinny_gemm");
}

}  // namespace jamba::cuda
