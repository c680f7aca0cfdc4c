// Small rules the CPU and CUDA backends must apply alike, compiled for both: the host builds them
// into the CPU kernels and the ops binding (so CPU tests check them without a GPU), nvcc into the
// device kernels. Each is a pure function of its arguments.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define JAMBA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define JAMBA_HOST_DEVICE inline
#endif

namespace jamba::rules {

// The router's order of experts: the larger probability first, NaN after every number, and ties
// (two NaNs included) to the lower expert index. A strict weak order even under NaN, so top-k is
// deterministic on both backends: a token whose logits hold a NaN (its probabilities are then all
// NaN) goes to experts 0..k-1 with NaN weights, which propagate instead of reading stale rows.
JAMBA_HOST_DEVICE bool routes_before(float pa, int32_t a, float pb, int32_t b) {
  const bool na = pa != pa, nb = pb != pb;
  if (na != nb) return nb;
  if (!na && pa != pb) return pa > pb;
  return a < b;
}

// Gumbel(0, 1) noise from 32 random bits, −log(−log u). u takes the top 23 bits, centred:
// u = (m + 0.5)·2⁻²³ lies in [2⁻²⁴, 1 − 2⁻²⁴], every value exact in float32, so the noise is
// finite (−2.83 … 16.64). With 24 bits, (2²⁴ − 1 + 0.5)·2⁻²⁴ rounds to 1 and the noise is +∞,
// forcing a uniformly random token in 0.39% of steps at a 65,536 vocabulary.
JAMBA_HOST_DEVICE float gumbel_noise(uint32_t bits) {
  const float u = (float(bits >> 9) + 0.5f) * (1.0f / 8388608.0f);
  return -logf(-logf(u));
}

// Split-KV decode attention cuts a sequence's keys into this many splits: about one per 256
// keys, at most kMaxDecodeSplits. It depends on the sequence's own length only, so a sequence's
// attention sums run in the same order alone or batched beside longer ones.
constexpr int kMaxDecodeSplits = 32;
JAMBA_HOST_DEVICE int decode_splits(int64_t keys) {
  const int64_t s = keys / 256;
  return int(s < 1 ? 1 : s > kMaxDecodeSplits ? kMaxDecodeSplits : s);
}

// Keys [begin, end) of split `split` of a sequence with `keys` keys: ceil(keys / n) each, the
// last ones shorter or empty; splits at or past the sequence's count are empty.
JAMBA_HOST_DEVICE void decode_split_range(int64_t keys, int split, int64_t& begin, int64_t& end) {
  const int n = decode_splits(keys);
  const int64_t per = (keys + n - 1) / n, b = int64_t(split) * per;  // n · per ≥ keys
  begin = b < keys ? b : keys;
  end = b + per < keys ? b + per : keys;
}

}  // namespace jamba::rules
