// Where one tensor's bytes live in a checkpoint; lib/safetensors.ts has validated every field.
#pragma once
#include <cstdint>
#include <string>
#include <vector>
#include "../core/dtype.h"

namespace jamba {

struct TensorSource {
  std::string name;   // checkpoint name, for error messages
  std::string file;   // absolute path of the shard
  uint64_t offset = 0;
  uint64_t nbytes = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  bool present() const { return !file.empty(); }
};

// Reads a tensor's bytes straight from its file into `dst` (nbytes of them). Files are read once,
// tensor by tensor, so a checkpoint is never held twice.
void read_tensor(const TensorSource& src, void* dst);

// Reads and converts to float32 (small vectors: norms, biases, A_log, D, conv taps).
std::vector<float> read_tensor_f32(const TensorSource& src);

}  // namespace jamba
