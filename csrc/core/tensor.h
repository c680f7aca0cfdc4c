// A strided n-d tensor over owned or borrowed storage. Kernels take raw pointers plus sizes;
// Tensor is what holds weights, caches and workspaces and answers questions about memory.
#pragma once
#include <cstdint>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>
#include "dtype.h"
#include "error.h"

namespace jamba {

class Tensor {
 public:
  Tensor() = default;

  // Allocates zeroed, 64-byte aligned storage (a whole cache line for every vector load).
  // Large blocks (weights, load buffers) are mapped straight from the OS and unmapped when freed,
  // so disposing a model returns its memory at once instead of leaving it in a malloc arena.
  static Tensor empty(DType dtype, std::vector<int64_t> shape) {
    Tensor t;
    t.dtype_ = dtype;
    t.shape_ = std::move(shape);
    t.strides_ = contiguous_strides(t.shape_);
    const size_t bytes = t.numel() * dtype_size(dtype);
    const size_t padded = (bytes + 63) / 64 * 64;
    void* p = nullptr;
    if (padded >= kMapThreshold) {
      p = ::mmap(nullptr, padded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) fail("out_of_memory", "cannot allocate " + std::to_string(bytes) + " bytes");
      t.storage_ = std::shared_ptr<void>(p, [padded](void* q) { ::munmap(q, padded); });  // zero-filled by the OS
    } else if (padded) {
      p = std::aligned_alloc(64, padded);
      if (!p) fail("out_of_memory", "cannot allocate " + std::to_string(bytes) + " bytes");
      std::memset(p, 0, padded);
      t.storage_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
    }
    t.data_ = p;
    return t;
  }

  static constexpr size_t kMapThreshold = size_t(1) << 20;

  // Views memory someone else owns; the caller keeps it alive.
  static Tensor borrow(DType dtype, std::vector<int64_t> shape, void* data) {
    Tensor t;
    t.dtype_ = dtype;
    t.shape_ = std::move(shape);
    t.strides_ = contiguous_strides(t.shape_);
    t.data_ = data;
    return t;
  }

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  const std::vector<int64_t>& strides() const { return strides_; }
  int64_t dim(size_t i) const { return shape_.at(i); }
  size_t ndim() const { return shape_.size(); }
  size_t numel() const {
    return std::accumulate(shape_.begin(), shape_.end(), size_t(1), [](size_t a, int64_t b) { return a * size_t(b); });
  }
  size_t nbytes() const { return numel() * dtype_size(dtype_); }
  bool owning() const { return storage_ != nullptr; }
  bool defined() const { return data_ != nullptr || numel() == 0; }

  template <typename T> T* data() { return static_cast<T*>(data_); }
  template <typename T> const T* data() const { return static_cast<const T*>(data_); }
  void* raw() { return data_; }

 private:
  static std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape) {
    std::vector<int64_t> s(shape.size(), 1);
    for (size_t i = shape.size(); i-- > 1;) s[i - 1] = s[i] * shape[i];
    return s;
  }

  DType dtype_ = DType::F32;
  std::vector<int64_t> shape_;
  std::vector<int64_t> strides_;
  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
};

}  // namespace jamba
