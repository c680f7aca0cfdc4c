// Portable 16-lane float vectors (GCC/Clang vector extensions): one zmm with AVX-512, two ymm with
// AVX2, and still correct code anywhere else. Kernels use these instead of per-ISA intrinsics.
#pragma once
#include <cstdint>
#include <cstring>
#if defined(__AVX512F__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_* as "maybe uninitialized").
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#endif

namespace jamba::cpu {

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef uint16_t v16h __attribute__((vector_size(32)));
typedef int8_t v16b __attribute__((vector_size(16)));
constexpr int kLanes = 16;

inline v16f splat(float x) { v16f v; for (int i = 0; i < kLanes; ++i) v[i] = x; return v; }

inline v16f load16(const float* p) { v16f v; std::memcpy(&v, p, sizeof v); return v; }

// Widening loads. bf16 -> f32 is a 16-bit left shift of the bit pattern (exact); int8 -> f32 is
// exact too. GCC 12 scalarises the generic int8 conversion, so AVX-512 gets intrinsics.
#if defined(__AVX512F__)
inline v16f load16(const uint16_t* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return (v16f)_mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
inline v16f load16(const int8_t* p) {
  return (v16f)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
#else
inline v16f load16(const uint16_t* p) {
  v16h h; std::memcpy(&h, p, sizeof h);
  v16u u = __builtin_convertvector(h, v16u) << 16;
  v16f f; std::memcpy(&f, &u, sizeof f); return f;
}
inline v16f load16(const int8_t* p) {
  v16b b; std::memcpy(&b, p, sizeof b);
  return __builtin_convertvector(__builtin_convertvector(b, v16i), v16f);
}
#endif
inline void store16(float* p, v16f v) { std::memcpy(p, &v, sizeof v); }

inline float hsum(v16f v) {
  float s = 0.f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// exp(x) for float, about 1 ulp, branch-free so that loops calling it vectorise.
// Cody-Waite range reduction x = k ln2 + r, degree-6 polynomial for e^r, 2^k by exponent bits.
inline float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  float k = __builtin_rintf(x * 1.44269504088896341f);
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t e = (int32_t(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, 4);
  return p * scale;
}

inline float silu(float x) { return x / (1.0f + exp_approx(-x)); }

// softplus(v) = log(1 + e^v), and v itself above 20 as torch does. Branch-free so it vectorises:
// max(v, 0) + log1p(t) with t = e^-|v| in (0, 1], and log1p(t) = 2·atanh(s), s = t / (2 + t) in
// (0, 1/3], summed as an odd series to s^15 (truncation below 1e-9): no cancellation for small t.
inline float softplus(float v) {
  const float t = exp_approx(v < 0.f ? v : -v);
  const float s = t / (2.0f + t), s2 = s * s;
  float p = 1.0f / 15;
  p = p * s2 + 1.0f / 13;
  p = p * s2 + 1.0f / 11;
  p = p * s2 + 1.0f / 9;
  p = p * s2 + 1.0f / 7;
  p = p * s2 + 1.0f / 5;
  p = p * s2 + 1.0f / 3;
  p = p * s2 + 1.0f;
  const float r = (v > 0.f ? v : 0.f) + 2.0f * s * p;
  return v > 20.f ? v : r;
}

}  // namespace jamba::cpu
