// The CUDA kernels exposed to JavaScript one by one, for the GPU tests (each kernel against the
// CPU backend) and the GPU benchmark (each kernel timed with CUDA events). Built only when the
// addon is compiled with CUDA (JAMBA_WITH_CUDA); otherwise `cuda` is absent from the addon.
#pragma once
#include <napi.h>

namespace jamba::napi {

Napi::Object CudaOps(Napi::Env env);

}  // namespace jamba::napi
