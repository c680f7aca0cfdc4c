// NativeGradTape: the JS handle over a training forward's tape (csrc/model/grad_request.h), made by
// NativeModel.forwardForGrad and consumed by one backward().
#pragma once
#include <napi.h>

#include <memory>

#include "../model/executor.h"

namespace jamba::napi {

class NativeGradTape : public Napi::ObjectWrap<NativeGradTape> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit NativeGradTape(const Napi::CallbackInfo& info);

 private:
  Napi::Value Backward(const Napi::CallbackInfo& info);
  void Dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<GradTape> tape_;
  std::shared_ptr<Executor> model_;  // the weights stay while the tape can run
};

// The NativeModel method: forwardForGrad(examples, options) → Promise<{ tape, loss, exampleLoss, hidden?, logits? }>.
Napi::Value forward_for_grad(const Napi::CallbackInfo& info, const std::shared_ptr<Executor>& model);

}  // namespace jamba::napi
