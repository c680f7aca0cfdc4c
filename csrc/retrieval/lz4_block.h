// The LZ4 block format (github.com/lz4/lz4, doc/lz4_Block_format.md), as Lucene compresses its
// stored fields: the passages of an index are kept in LZ4 blocks. A greedy single-probe
// compressor (LZ4's "fast" level) and a decoder that checks every length and offset against its
// buffers, so a damaged index is reported, never read out of bounds.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace jamba::retrieval {

// Appends the compressed form of src[0..n) to out.
void lz4_compress(const uint8_t* src, size_t n, std::string& out);

// Decompresses exactly `n` bytes into dst from src[0..size); false if the block is malformed.
bool lz4_decompress(const uint8_t* src, size_t size, uint8_t* dst, size_t n);

// Decodes a block of `n` bytes as far as asked: a passage near a block's start costs only its prefix.
class Lz4Decoder {
 public:
  Lz4Decoder(const uint8_t* src, size_t size, uint8_t* dst, size_t n);
  // Decodes until at least `want` bytes are out or the block ends; false if it is malformed.
  bool fill(size_t want);
  size_t produced() const { return op_; }
  bool finished() const { return done_; }

 private:
  bool length(size_t& len);
  const uint8_t* src_;
  size_t size_;
  uint8_t* dst_;
  size_t n_;
  size_t ip_ = 0, op_ = 0;
  bool done_ = false;
};

}  // namespace jamba::retrieval
