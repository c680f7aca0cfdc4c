// Element types and the scalar conversions every backend shares.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>
#include <cmath>
#include <string>

namespace jamba {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2, I8 = 3, I32 = 4 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::BF16: case DType::F16: return 2;
    case DType::I8: return 1;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I8: return "i8";
    case DType::I32: return "i32";
  }
  return "?";
}

inline float bf16_to_f32(uint16_t v) {
  uint32_t u = uint32_t(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round-to-nearest-even, NaN kept quiet: the rounding torch applies.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// Float32 values as bf16 bits (round to nearest even), for uploads of bf16 weights and states.
inline std::vector<uint16_t> to_bf16_bits(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do { man <<= 1; ++e; } while (!(man & 0x400u));
      u = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | man << 13;
  } else {
    u = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Converts n stored elements of type `src` to float32.
inline void to_f32(DType src, const void* in, float* out, size_t n) {
  switch (src) {
    case DType::F32: std::memcpy(out, in, n * 4); break;
    case DType::BF16: { auto p = static_cast<const uint16_t*>(in); for (size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(p[i]); } break;
    case DType::F16: { auto p = static_cast<const uint16_t*>(in); for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(p[i]); } break;
    case DType::I8: { auto p = static_cast<const int8_t*>(in); for (size_t i = 0; i < n; ++i) out[i] = float(p[i]); } break;
    case DType::I32: { auto p = static_cast<const int32_t*>(in); for (size_t i = 0; i < n; ++i) out[i] = float(p[i]); } break;
  }
}

}  // namespace jamba
