// How postings are written: blocks of 128 values bit-packed at the width of the largest (frame of
// reference, as Lucene's ForUtil), and LEB128 varints for the tail of a list and for metadata.
// Readers get explicit bounds: a damaged index yields false, never a read past its buffer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace jamba::retrieval {

constexpr int kBlockSize = 128;

// The number of bits the largest of values[0..n) needs (0 when all are 0).
int bits_needed(const uint32_t* values, int n);

// Appends values[0..kBlockSize) at `bits` bits each: kBlockSize · bits / 8 bytes.
void pack_block(const uint32_t* values, int bits, std::string& out);

// Reads kBlockSize values of `bits` bits from src (which holds kBlockSize · bits / 8 bytes).
void unpack_block(const uint8_t* src, int bits, uint32_t* values);

inline size_t packed_bytes(int bits) { return size_t(kBlockSize) * size_t(bits) / 8; }

inline void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(char(v));
}

// Reads a varint of at most 64 bits at src[pos], pos < end; false if it runs past end or is too long.
inline bool get_varint(const uint8_t* src, size_t end, size_t& pos, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= end) return false;
    const uint8_t b = src[pos++];
    v |= uint64_t(b & 0x7F) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

}  // namespace jamba::retrieval
