// Single kernels on caller-owned typed arrays, for the kernel tests and bench/. They run on the
// calling thread (their inputs are small and owned by JS), unlike anything touching model weights.
#pragma once
#include <napi.h>

namespace jamba::napi {
Napi::Object ops_exports(Napi::Env env);
}
