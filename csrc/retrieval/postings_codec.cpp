#include "postings_codec.h"

#include <cstring>
#include <utility>

namespace jamba::retrieval {

static_assert(kBlockSize % 8 == 0, "a packed block is a whole number of bytes at any width");

int bits_needed(const uint32_t* values, int n) {
  uint32_t all = 0;
  for (int i = 0; i < n; ++i) all |= values[i];
  return all ? 32 - __builtin_clz(all) : 0;
}

void pack_block(const uint32_t* values, int bits, std::string& out) {
  if (bits == 0) return;
  uint64_t acc = 0;
  int have = 0;
  for (int i = 0; i < kBlockSize; ++i) {
    acc |= uint64_t(values[i]) << have;
    have += bits;
    while (have >= 8) {
      out.push_back(char(acc & 0xFF));
      acc >>= 8;
      have -= 8;
    }
  }
}

namespace {

// One width, known at compile time: the shifts and masks unroll.
template <int B>
void unpack_width(const uint8_t* src, uint32_t* values) {
  constexpr uint64_t mask = B == 32 ? 0xFFFFFFFFull : (uint64_t(1) << B) - 1;
  // 8 values fill B whole bytes.
  for (int g = 0; g < kBlockSize / 8; ++g, src += B) {
    uint64_t lo = 0, hi = 0;
    std::memcpy(&lo, src, B < 8 ? B : 8);
    if constexpr (B > 8) std::memcpy(&hi, src + 8, B - 8);
    for (int i = 0; i < 8; ++i) {
      const int bit = i * B;
      uint64_t v;
      if (bit + B <= 64) v = lo >> bit;
      else if (bit >= 64) v = hi >> (bit - 64);
      else v = (lo >> bit) | (hi << (64 - bit));
      values[g * 8 + i] = uint32_t(v & mask);
    }
  }
}

// Widths above 16 take more than two words per 8 values: read them a value at a time (rare: gaps
// of over 65,536 passages in a list of 128 or more).
void unpack_generic(const uint8_t* src, int bits, uint32_t* values) {
  const uint64_t mask = bits == 32 ? 0xFFFFFFFFull : (uint64_t(1) << bits) - 1;
  for (int i = 0; i < kBlockSize; ++i) {
    const size_t bit = size_t(i) * size_t(bits);
    uint64_t w = 0;
    std::memcpy(&w, src + bit / 8, (bit % 8 + size_t(bits) + 7) / 8);
    values[i] = uint32_t((w >> (bit % 8)) & mask);
  }
}

template <int... B>
void dispatch(int bits, const uint8_t* src, uint32_t* values, std::integer_sequence<int, B...>) {
  using Fn = void (*)(const uint8_t*, uint32_t*);
  static constexpr Fn table[] = {&unpack_width<B + 1>...};
  table[bits - 1](src, values);
}

}  // namespace

void unpack_block(const uint8_t* src, int bits, uint32_t* values) {
  if (bits == 0) {
    std::memset(values, 0, sizeof(uint32_t) * kBlockSize);
  } else if (bits <= 16) {
    dispatch(bits, src, values, std::make_integer_sequence<int, 16>{});
  } else {
    unpack_generic(src, bits, values);
  }
}

}  // namespace jamba::retrieval
