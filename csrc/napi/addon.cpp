// Module entry. Context-aware: every class constructor lives in per-environment instance data,
// so the addon loads in worker threads and in several jest environments at once.
#include <napi.h>

#include "grad_binding.h"
#include "model_binding.h"
#include "ops_binding.h"
#include "retrieval_binding.h"
#ifdef JAMBA_WITH_CUDA
#include "cuda_binding.h"
#endif

namespace jamba::napi {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->model_ctor = Napi::Persistent(NativeModel::Init(env));
  data->sequence_ctor = Napi::Persistent(NativeSequence::Init(env));
  data->grad_tape_ctor = Napi::Persistent(NativeGradTape::Init(env));
  env.SetInstanceData<AddonData>(data);
  exports.Set("NativeModel", data->model_ctor.Value());
  exports.Set("NativeSequence", data->sequence_ctor.Value());
  exports.Set("ops", ops_exports(env));
  exports.Set("retrieval", retrieval_exports(env));
#ifdef JAMBA_WITH_CUDA
  exports.Set("cuda", CudaOps(env));
  exports.Set("backend", Napi::String::New(env, "cpu+cuda"));
#else
  exports.Set("backend", Napi::String::New(env, "cpu"));
#endif
  return exports;
}

NODE_API_MODULE(jamba, Init)

}  // namespace jamba::napi
