// A strict, bounded parser for safetensors headers. The loader re-checks every tensor the plan
// names against the file's own header with it (defence in depth: native code does not trust the
// plan it is given), and it is the target of fuzz/safetensors_header_fuzz.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>
#include "../core/dtype.h"

namespace jamba {

struct HeaderEntry {
  std::string name;
  std::string dtype;            // as written ("BF16", "F32", …)
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // data_offsets, relative to the data region
};

struct ParsedHeader {
  uint64_t header_len = 0;      // bytes of JSON after the 8-byte length
  std::vector<HeaderEntry> tensors;
};

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr int kMaxHeaderDepth = 16;

// Parses the first bytes of a file of `file_size` bytes (`prefix` holds at least 8 + header_len
// bytes, or the whole file if shorter) and validates it completely: JSON syntax, nesting depth,
// duplicate names, known dtypes, shape × dtype size = byte range, no overflow, ranges that tile
// the data region with no overlap, gap or trailing bytes. Throws jamba::Error("checkpoint").
ParsedHeader parse_safetensors_header(const uint8_t* prefix, size_t prefix_len, uint64_t file_size);

// Element size of a safetensors dtype name, 0 if unknown.
size_t safetensors_dtype_size(const std::string& dtype);

}  // namespace jamba
