// Where one tensor's bytes live in a checkpoint; lib/safetensors.ts has validated every field.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>
#include <map>
#include "../core/dtype.h"
#include "safetensors_header.h"

namespace jamba {

struct TensorSource {
  std::string name;   // checkpoint name, for error messages
  std::string file;   // absolute path of the shard
  uint64_t offset = 0;
  uint64_t nbytes = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  bool present() const { return !file.empty(); }
  // As a matrix: the first dimension by the product of the others.
  int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  int64_t cols() const {
    int64_t c = 1;
    for (size_t i = 1; i < shape.size(); ++i) c *= shape[i];
    return c;
  }
  int64_t numel() const { return rows() * cols(); }
};

// Reads tensors' bytes straight from their files. Files are read once, tensor by tensor, so a
// checkpoint is never held twice; `progress` (if set) hears the running byte count after each.
// Before reading, each source is checked against its file's own header (parsed natively): the
// name must exist there with the same dtype, shape and byte range.
class TensorReader {
 public:
  explicit TensorReader(std::function<void(uint64_t)> progress = {}) : progress_(std::move(progress)) {}
  void read(const TensorSource& src, void* dst);             // nbytes of raw data into dst
  std::vector<float> read_f32(const TensorSource& src);      // converted to float32

 private:
  struct FileHeader { uint64_t data_start; std::map<std::string, HeaderEntry> tensors; };
  const FileHeader& header_of(const std::string& file);
  void verify(const TensorSource& src);

  std::function<void(uint64_t)> progress_;
  uint64_t done_ = 0;
  std::map<std::string, FileHeader> headers_;
};

}  // namespace jamba
