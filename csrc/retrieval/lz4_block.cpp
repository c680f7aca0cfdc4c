#include "lz4_block.h"

#include <cstring>
#include <vector>

namespace jamba::retrieval {

namespace {

constexpr size_t kMinMatch = 4;
constexpr size_t kLastLiterals = 5;   // a block ends with at least 5 literals
constexpr size_t kMatchLimit = 12;    // no match starts within the last 12 bytes
constexpr size_t kMaxOffset = 65535;
constexpr int kHashBits = 14;

inline uint32_t read32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline uint32_t hash4(uint32_t v) { return (v * 2654435761u) >> (32 - kHashBits); }

void put_length(std::string& out, size_t len) {  // the bytes after a nibble of 15
  for (; len >= 255; len -= 255) out.push_back(char(255));
  out.push_back(char(len));
}

void put_sequence(std::string& out, const uint8_t* lit, size_t nlit, size_t offset, size_t match) {
  const size_t ml = match ? match - kMinMatch : 0;
  out.push_back(char(((nlit >= 15 ? 15 : nlit) << 4) | (ml >= 15 ? 15 : ml)));
  if (nlit >= 15) put_length(out, nlit - 15);
  out.append(reinterpret_cast<const char*>(lit), nlit);
  if (!match) return;
  out.push_back(char(offset & 0xFF));
  out.push_back(char(offset >> 8));
  if (ml >= 15) put_length(out, ml - 15);
}

}  // namespace

void lz4_compress(const uint8_t* src, size_t n, std::string& out) {
  size_t anchor = 0;
  if (n > kMatchLimit) {
    std::vector<uint32_t> table(size_t(1) << kHashBits, UINT32_MAX);
    const size_t match_end = n - kLastLiterals, last_start = n - kMatchLimit;
    size_t ip = 0, misses = 0;
    while (ip < last_start) {
      const uint32_t h = hash4(read32(src + ip));
      const uint32_t cand = table[h];
      table[h] = uint32_t(ip);
      if (cand == UINT32_MAX || ip - cand > kMaxOffset || read32(src + cand) != read32(src + ip)) {
        ip += 1 + (misses++ >> 6);  // LZ4's acceleration: incompressible data is skipped faster
        continue;
      }
      misses = 0;
      size_t len = kMinMatch;
      while (ip + len < match_end && src[cand + len] == src[ip + len]) ++len;
      put_sequence(out, src + anchor, ip - anchor, ip - cand, len);
      ip += len;
      anchor = ip;
    }
  }
  put_sequence(out, src + anchor, n - anchor, 0, 0);
}

Lz4Decoder::Lz4Decoder(const uint8_t* src, size_t size, uint8_t* dst, size_t n) : src_(src), size_(size), dst_(dst), n_(n) {}

bool Lz4Decoder::length(size_t& len) {
  if (len != 15) return true;
  for (;;) {
    if (ip_ >= size_) return false;
    const uint8_t b = src_[ip_++];
    len += b;
    if (len > n_) return false;
    if (b != 255) return true;
  }
}

bool Lz4Decoder::fill(size_t want) {
  while (!done_ && op_ < want) {
    if (ip_ >= size_) return false;
    const uint8_t token = src_[ip_++];
    size_t nlit = token >> 4;
    if (!length(nlit) || nlit > size_ - ip_ || nlit > n_ - op_) return false;
    if (nlit <= 16 && size_ - ip_ >= 16 && n_ - op_ >= 16) std::memcpy(dst_ + op_, src_ + ip_, 16);  // a fixed copy is cheaper
    else std::memcpy(dst_ + op_, src_ + ip_, nlit);
    ip_ += nlit;
    op_ += nlit;
    if (ip_ == size_) {  // the last sequence has literals only
      done_ = true;
      return op_ == n_;
    }
    if (size_ - ip_ < 2) return false;
    const size_t offset = size_t(src_[ip_]) | size_t(src_[ip_ + 1]) << 8;
    ip_ += 2;
    size_t match = token & 15;
    if (!length(match)) return false;
    match += kMinMatch;
    if (offset == 0 || offset > op_ || match > n_ - op_) return false;
    uint8_t* to = dst_ + op_;
    const uint8_t* from = to - offset;
    if (offset >= 16 && n_ - op_ >= match + 16) {
      // 16 bytes a step, past the match's end (later sequences overwrite it): each step reads
      // only bytes written before it.
      for (size_t i = 0; i < match; i += 16) std::memcpy(to + i, from + i, 16);
    } else {
      for (size_t i = 0; i < match; ++i) to[i] = from[i];  // may be a run: the match overlaps what it writes
    }
    op_ += match;
  }
  return true;
}

bool lz4_decompress(const uint8_t* src, size_t size, uint8_t* dst, size_t n) {
  Lz4Decoder d(src, size, dst, n);
  return d.fill(n) && d.finished() && d.produced() == n;
}

}  // namespace jamba::retrieval
