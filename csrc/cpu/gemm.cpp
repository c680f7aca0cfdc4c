#include "gemm.h"

#include <algorithm>
#include <array>
#include <type_traits>
#include <utility>
#include <cmath>
#include <cstring>

#include "../core/thread_pool.h"
#include "simd.h"

namespace jamba::cpu {

namespace {

constexpr int64_t kPanel = 16;
constexpr int64_t kKBlock = 512;  // a k-slice of a panel group stays in L1/L2 across row tiles
constexpr int64_t kInlineWork = 16384;

template <typename T>
void pack_panels(const T* src, int64_t n, int64_t k, T* dst) {
  const int64_t np = (n + kPanel - 1) / kPanel;
  for (int64_t p = 0; p < np; ++p)
    for (int64_t c = 0; c < kPanel; ++c) {
      const int64_t row = p * kPanel + c;
      if (row >= n) break;
      const T* s = src + row * k;
      T* d = dst + p * k * kPanel + c;
      for (int64_t j = 0; j < k; ++j) d[j * kPanel] = s[j];
    }
}

// MR rows × NP panels of outputs over k in [k0, k1). Accumulators start from `out` after the first
// k-block, so splitting k changes nothing in the order of operations.
template <typename W, int MR, int NP>
void micro_tile(const float* x, int64_t ldx, const W* panel0, int64_t panel_stride, int64_t k0, int64_t k1,
                float* tile, bool first) {
  v16f acc[MR][NP];
  for (int r = 0; r < MR; ++r)
    for (int p = 0; p < NP; ++p) acc[r][p] = first ? v16f{} : load16(tile + (r * NP + p) * kPanel);
  for (int64_t kk = k0; kk < k1; ++kk) {
    v16f b[NP];
    for (int p = 0; p < NP; ++p) b[p] = load16(panel0 + p * panel_stride + kk * kPanel);
    for (int r = 0; r < MR; ++r) {
      const float a = x[r * ldx + kk];  // scalar × vector: a broadcast folded into the FMA
      for (int p = 0; p < NP; ++p) acc[r][p] += a * b[p];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int p = 0; p < NP; ++p) store16(tile + (r * NP + p) * kPanel, acc[r][p]);
}

template <typename W, int NP>
using TileFn = void (*)(const float*, int64_t, const W*, int64_t, int64_t, int64_t, float*, bool);

template <typename W, int NP, int... R>
constexpr std::array<TileFn<W, NP>, sizeof...(R)> make_tiles(std::integer_sequence<int, R...>) {
  return {micro_tile<W, R + 1, NP>...};
}

// The micro-kernel for a tile of `rows` ≤ MR rows (the last row tile may be short).
template <typename W, int MR, int NP>
TileFn<W, NP> tile_for_rows(int rows) {
  static constexpr auto tiles = make_tiles<W, NP>(std::make_integer_sequence<int, MR>{});
  return tiles[size_t(rows - 1)];
}

// Widens a k-slice of NP panels to float32 once per pass over the row tiles (exact: bf16 and
// int8 values are floats), so the inner loop is the float kernel's and the widening cost is
// shared by every row tile of the chunk.
template <typename W, int NP>
void widen_panels(const W* panel0, int64_t panel_stride, int64_t k0, int64_t len, float* dst) {
  for (int p = 0; p < NP; ++p) {
    const W* src = panel0 + p * panel_stride + k0 * kPanel;
    float* d = dst + p * len * kPanel;
    for (int64_t i = 0; i < len; ++i) store16(d + i * kPanel, load16(src + i * kPanel));
  }
}

template <typename W, int MR, int NP, bool Widen>
void gemm_typed(const float* x, int64_t ldx, int64_t m, const PackedWeight& w, float* out, int64_t ldo) {
  const W* panels = w.panels.data<W>();
  const int64_t groups = (w.n + NP * kPanel - 1) / (NP * kPanel);  // whole groups exist: panels are padded
  const int64_t row_tiles = (m + MR - 1) / MR;
  const int threads = ThreadPool::instance().size();
  // Split over panel groups first (a thread keeps its weights hot across decode steps), and over
  // row tiles as well when there are too few groups to keep every thread busy.
  int64_t row_chunks = groups >= 2 * threads ? 1 : std::min<int64_t>(row_tiles, (2 * threads + groups - 1) / groups);
  row_chunks = std::max<int64_t>(row_chunks, 1);
  const float* scale = w.dtype == DType::I8 ? w.scale.data<float>() : nullptr;
  const float* bias = w.bias.numel() ? w.bias.data<float>() : nullptr;
  const int64_t k = w.k, panel_stride = k * kPanel;
  constexpr int64_t kTile = MR * NP * kPanel;

  auto body = [&](int64_t t0, int64_t t1) {
    // Per-thread scratch, kept between calls (decode calls this thousands of times a second);
    // 64-byte aligned so a vector load never straddles cache lines.
    thread_local Tensor acc_buf, wide_buf;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t g = t / row_chunks, chunk = t % row_chunks;
      const int64_t p0 = g * NP;
      const int64_t rt0 = row_tiles * chunk / row_chunks, rt1 = row_tiles * (chunk + 1) / row_chunks;
      const int64_t c0 = p0 * kPanel, c1 = std::min<int64_t>(w.n, (p0 + NP) * kPanel);
      constexpr bool widen = Widen && !std::is_same_v<W, float>;
      if (int64_t(acc_buf.numel()) < (rt1 - rt0) * kTile) acc_buf = Tensor::empty(DType::F32, {(rt1 - rt0) * kTile});
      float* acc = acc_buf.data<float>();
      // k-blocks outermost: a k-slice of the group's panels stays in cache across the row tiles.
      // Every output is still one multiply-add chain over k in order (the accumulators carry over).
      for (int64_t kb = 0; kb < std::max<int64_t>(k, 1); kb += kKBlock) {
        const int64_t len = std::min(k, kb + kKBlock) - kb;
        if constexpr (widen) {
          if (int64_t(wide_buf.numel()) < NP * len * kPanel) wide_buf = Tensor::empty(DType::F32, {NP * len * kPanel});
          widen_panels<W, NP>(panels + p0 * panel_stride, panel_stride, kb, len, wide_buf.data<float>());
        }
        for (int64_t rt = rt0; rt < rt1; ++rt) {
          const int64_t r0 = rt * MR;
          const int rows = int(std::min<int64_t>(MR, m - r0));
          float* tile = acc + (rt - rt0) * kTile;
          if constexpr (widen)
            tile_for_rows<float, MR, NP>(rows)(x + r0 * ldx + kb, ldx, wide_buf.data<float>(), len * kPanel, 0, len, tile, kb == 0);
          else
            tile_for_rows<W, MR, NP>(rows)(x + r0 * ldx, ldx, panels + p0 * panel_stride, panel_stride, kb, kb + len, tile, kb == 0);
        }
      }
      // Epilogue: per-row int8 scale after the float accumulation, then the bias.
      for (int64_t rt = rt0; rt < rt1; ++rt) {
        const int64_t r0 = rt * MR;
        const int rows = int(std::min<int64_t>(MR, m - r0));
        const float* tile = acc + (rt - rt0) * kTile;
        for (int r = 0; r < rows; ++r) {
          float* o = out + (r0 + r) * ldo;
          for (int64_t p = 0; p < NP; ++p) {
            const int64_t c = c0 + p * kPanel, nc = std::min<int64_t>(kPanel, c1 - c);
            if (nc <= 0) break;
            const float* v16 = tile + (r * NP + p) * kPanel;
            if (nc == kPanel) {
              v16f v = load16(v16);
              if (scale) v *= load16(scale + c);
              if (bias) v += load16(bias + c);
              store16(o + c, v);
            } else {
              for (int64_t l = 0; l < nc; ++l) o[c + l] = (scale ? v16[l] * scale[c + l] : v16[l]) + (bias ? bias[c + l] : 0.f);
            }
          }
        }
      }
    }
  };
  // Waking the pool costs about as much as 16K multiply-adds; smaller products run here.
  if (m * w.n * k < kInlineWork) body(0, groups * row_chunks);
  else ThreadPool::instance().parallel_for(groups * row_chunks, body);
}

template <typename W>
void gemm_dispatch(const float* x, int64_t ldx, int64_t m, const PackedWeight& w, float* out, int64_t ldo) {
  // Every path computes each output as the same multiply-add chain over k (widening bf16 and int8
  // to float is exact), so which one a row takes never changes its result.
  if (m < 4) {
    // Decode: one row, eight independent panels keep both FMA pipes busy.
    for (int64_t r = 0; r < m; ++r) gemm_typed<W, 1, 8, false>(x + r * ldx, ldx, 1, w, out + r * ldo, ldo);
  } else if (m < 16 && !std::is_same_v<W, float>) {
    // A few rows: widen in registers, 8 rows × 32 columns so each widening feeds eight FMAs.
    gemm_typed<W, 8, 2, false>(x, ldx, m, w, out, ldo);
  } else {
    // Many rows: 4 × 64 float tiles; bf16 and int8 panels are widened once per k-slice.
    gemm_typed<W, 4, 4, true>(x, ldx, m, w, out, ldo);
  }
}

// gemm_dx: dx[r, k] = Σ_p Σ_j dy[r, 16p + j] · panel[p][k][j]. A tile of DR rows × DK columns of
// dx keeps one 16-lane accumulator per output across every panel (a vector over j), and sums its
// lanes once at the end: the panel rows are read contiguously, and the order of the sum is fixed.
constexpr int kDxRows = 4, kDxCols = 4;
constexpr int64_t kDxKChunk = 64;    // columns of dx per task: a slice of every panel stays in L2
constexpr int64_t kDxRowChunk = 256; // rows of dy padded and scaled at a time

template <typename W, int DR>
void dx_tile(const float* dyp, int64_t ldp, const W* panels, int64_t num_panels, int64_t k, int64_t k0, int nk, float* out,
             int64_t ldo, bool accumulate) {
  v16f acc[DR][kDxCols] = {};
  const int64_t panel_stride = k * kPanel;
  for (int64_t p = 0; p < num_panels; ++p) {
    const W* pw = panels + p * panel_stride + k0 * kPanel;
    v16f d[DR];
    for (int r = 0; r < DR; ++r) d[r] = load16(dyp + r * ldp + p * kPanel);
    for (int c = 0; c < kDxCols; ++c) {
      if (c >= nk) break;
      const v16f w = load16(pw + c * kPanel);
      for (int r = 0; r < DR; ++r) acc[r][c] += d[r] * w;
    }
  }
  for (int r = 0; r < DR; ++r)
    for (int c = 0; c < nk; ++c) {
      const float v = hsum(acc[r][c]);
      out[r * ldo + c] = accumulate ? out[r * ldo + c] + v : v;
    }
}

template <typename W>
void gemm_dx_typed(const float* dy, int64_t lddy, int64_t m, const PackedWeight& w, float* dx, int64_t lddx, bool accumulate) {
  const W* panels = w.panels.data<W>();
  const int64_t np = w.num_panels(), k = w.k, ldp = np * kPanel;
  const float* scale = w.dtype == DType::I8 ? w.scale.data<float>() : nullptr;
  // dy padded to whole panels (zeros past n), scaled by the int8 row scale, a chunk of rows at a time.
  Tensor padded = Tensor::empty(DType::F32, {std::min(m, kDxRowChunk) * ldp});
  for (int64_t m0 = 0; m0 < m; m0 += kDxRowChunk) {
    const int64_t rows = std::min(kDxRowChunk, m - m0);
    float* dyp = padded.data<float>();
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = dy + (m0 + r) * lddy;
      float* dst = dyp + r * ldp;
      for (int64_t c = 0; c < w.n; ++c) dst[c] = scale ? src[c] * scale[c] : src[c];
      for (int64_t c = w.n; c < ldp; ++c) dst[c] = 0.f;
    }
    const int64_t kchunks = (k + kDxKChunk - 1) / kDxKChunk, rtiles = (rows + kDxRows - 1) / kDxRows;
    auto body = [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t kc0 = t * kDxKChunk, kc1 = std::min(k, kc0 + kDxKChunk);
        for (int64_t rt = 0; rt < rtiles; ++rt) {
          const int64_t r0 = rt * kDxRows;
          const int dr = int(std::min<int64_t>(kDxRows, rows - r0));
          for (int64_t k0 = kc0; k0 < kc1; k0 += kDxCols) {
            const int nk = int(std::min<int64_t>(kDxCols, kc1 - k0));
            float* o = dx + (m0 + r0) * lddx + k0;
            const float* d = dyp + r0 * ldp;
            switch (dr) {
              case 4: dx_tile<W, 4>(d, ldp, panels, np, k, k0, nk, o, lddx, accumulate); break;
              case 3: dx_tile<W, 3>(d, ldp, panels, np, k, k0, nk, o, lddx, accumulate); break;
              case 2: dx_tile<W, 2>(d, ldp, panels, np, k, k0, nk, o, lddx, accumulate); break;
              default: dx_tile<W, 1>(d, ldp, panels, np, k, k0, nk, o, lddx, accumulate); break;
            }
          }
        }
      }
    };
    if (rows * np * kPanel * k < kInlineWork) body(0, kchunks);
    else ThreadPool::instance().parallel_for(kchunks, body);
  }
}

}  // namespace

void gemm_dx(const float* dy, int64_t lddy, int64_t m, const PackedWeight& w, float* dx, int64_t lddx, bool accumulate) {
  if (m <= 0 || w.k <= 0) return;
  switch (w.dtype) {
    case DType::F32: gemm_dx_typed<float>(dy, lddy, m, w, dx, lddx, accumulate); break;
    case DType::BF16: gemm_dx_typed<uint16_t>(dy, lddy, m, w, dx, lddx, accumulate); break;
    case DType::I8: gemm_dx_typed<int8_t>(dy, lddy, m, w, dx, lddx, accumulate); break;
    default: fail("invalid_argument", "gemm_dx: unsupported weight dtype");
  }
}

void PackedWeight::read_row(int64_t r, float* out) const {
  const int64_t p = r / kPanel, lane = r % kPanel;
  const size_t base = size_t(p * k * kPanel + lane);
  for (int64_t j = 0; j < k; ++j) {
    const size_t i = base + size_t(j * kPanel);
    switch (dtype) {
      case DType::F32: out[j] = panels.data<float>()[i]; break;
      case DType::BF16: out[j] = bf16_to_f32(panels.data<uint16_t>()[i]); break;
      case DType::I8: out[j] = float(panels.data<int8_t>()[i]) * scale.data<float>()[r]; break;
      default: break;
    }
  }
}

PackedWeight pack_weight(const void* src, DType src_dtype, int64_t n, int64_t k) {
  PackedWeight w;
  w.n = n;
  w.k = k;
  if (src_dtype == DType::BF16) {
    w.dtype = DType::BF16;
    w.panels = Tensor::empty(DType::BF16, {PackedWeight::panels_for(n), k, kPanel});
    pack_panels(static_cast<const uint16_t*>(src), n, k, w.panels.data<uint16_t>());
  } else if (src_dtype == DType::F32) {
    w.dtype = DType::F32;
    w.panels = Tensor::empty(DType::F32, {PackedWeight::panels_for(n), k, kPanel});
    pack_panels(static_cast<const float*>(src), n, k, w.panels.data<float>());
  } else if (src_dtype == DType::F16) {
    Tensor tmp = Tensor::empty(DType::F32, {n, k});
    to_f32(DType::F16, src, tmp.data<float>(), tmp.numel());
    return pack_weight(tmp.data<float>(), DType::F32, n, k);
  } else {
    fail("invalid_argument", std::string("cannot use ") + dtype_name(src_dtype) + " as a weight");
  }
  return w;
}

void quantize_int8_rows(const float* w, int64_t n, int64_t k, int8_t* q, float* scale) {
  for (int64_t r = 0; r < n; ++r) {
    const float* row = w + r * k;
    float amax = 0.f;
    for (int64_t j = 0; j < k; ++j) amax = std::max(amax, std::fabs(row[j]));
    const float s = amax / 127.0f;
    scale[r] = s;
    for (int64_t j = 0; j < k; ++j) {
      float v = s > 0.f ? std::nearbyint(row[j] / s) : 0.f;  // default rounding mode: half to even
      v = std::min(127.f, std::max(-127.f, v));
      q[r * k + j] = int8_t(v);
    }
  }
}

PackedWeight pack_weight_int8(const void* src, DType src_dtype, int64_t n, int64_t k) {
  Tensor f = Tensor::empty(DType::F32, {n, k});
  to_f32(src_dtype, src, f.data<float>(), f.numel());
  Tensor q = Tensor::empty(DType::I8, {n, k});
  PackedWeight w;
  w.dtype = DType::I8;
  w.n = n;
  w.k = k;
  w.scale = Tensor::empty(DType::F32, {n});
  quantize_int8_rows(f.data<float>(), n, k, q.data<int8_t>(), w.scale.data<float>());
  w.panels = Tensor::empty(DType::I8, {PackedWeight::panels_for(n), k, kPanel});
  pack_panels(q.data<int8_t>(), n, k, w.panels.data<int8_t>());
  return w;
}

void gemm(const float* x, int64_t ldx, int64_t m, const PackedWeight& w, float* out, int64_t ldo) {
  if (m <= 0 || w.n <= 0) return;
  switch (w.dtype) {
    case DType::F32: gemm_dispatch<float>(x, ldx, m, w, out, ldo); break;
    case DType::BF16: gemm_dispatch<uint16_t>(x, ldx, m, w, out, ldo); break;
    case DType::I8: gemm_dispatch<int8_t>(x, ldx, m, w, out, ldo); break;
    default: fail("invalid_argument", "gemm: unsupported weight dtype");
  }
}

}  // namespace jamba::cpu
