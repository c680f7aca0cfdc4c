#include "executor.h"

#include "../core/error.h"
#include "jamba_model.h"
#ifdef JAMBA_WITH_CUDA
#include "cuda_model.h"
#endif

namespace jamba {

std::unique_ptr<GradTape> Executor::forward_for_grad(const GradRequest&) const {
  fail("unsupported_device", std::string("training through the model (forwardForGrad) is not available on the ") + device() + " backend yet");
}

std::shared_ptr<Executor> make_executor(const ModelPlan& plan, std::function<void(uint64_t)> progress) {
  if (plan.device == "cpu") {
    if (plan.synthetic) fail("invalid_argument", "synthetic weights are a CUDA benchmark feature");
    return std::make_shared<JambaModel>(plan, std::move(progress));
  }
  if (plan.device == "cuda") {
#ifdef JAMBA_WITH_CUDA
    return std::make_shared<CudaJambaModel>(plan, std::move(progress));
#else
    fail("unsupported_device", "this build of jamba-node has no CUDA backend");
#endif
  }
  fail("invalid_argument", "unknown device '" + plan.device + "'");
}

}  // namespace jamba
