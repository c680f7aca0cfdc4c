// CUDA runtime errors as typed native errors (the binding turns them into JS errors by kind):
// host-only, so the executor and the N-API glue share it with the kernels.
#pragma once
#include <cuda_runtime_api.h>

#include <string>

#include "../core/error.h"

namespace jamba::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a sticky launch error so the context stays usable
  const char* kind = e == cudaErrorMemoryAllocation                                   ? "out_of_memory"
                     : e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ? "no_device"
                                                                                      : "cuda";
  fail(kind, std::string(what) + ": " + cudaGetErrorString(e));
}

}  // namespace jamba::cuda
