// NativeModel and NativeSequence: the JS handles over an Executor (CPU or CUDA) and SequenceState.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>

#include "../model/jamba_model.h"

namespace jamba::napi {

struct AddonData {
  Napi::FunctionReference model_ctor;
  Napi::FunctionReference sequence_ctor;
  Napi::FunctionReference grad_tape_ctor;
  Napi::FunctionReference index_reader_ctor;
};

class NativeSequence : public Napi::ObjectWrap<NativeSequence> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit NativeSequence(const Napi::CallbackInfo& info);

  std::shared_ptr<SequenceState> state(Napi::Env env);
  std::shared_ptr<std::atomic<bool>> busy() { return busy_; }

 private:
  Napi::Value Position(const Napi::CallbackInfo& info);
  Napi::Value Bytes(const Napi::CallbackInfo& info);
  void Reset(const Napi::CallbackInfo& info);
  void Dispose(const Napi::CallbackInfo& info);
  Napi::Value ExportState(const Napi::CallbackInfo& info);
  void ImportState(const Napi::CallbackInfo& info);

  std::shared_ptr<SequenceState> state_;
  std::shared_ptr<std::atomic<bool>> busy_ = std::make_shared<std::atomic<bool>>(false);
  const Executor* owner_ = nullptr;
  friend class NativeModel;
  friend Napi::Value forward_for_grad(const Napi::CallbackInfo&, const std::shared_ptr<Executor>&);
};

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit NativeModel(const Napi::CallbackInfo& info);

 private:
  static Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value NewSequence(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value ForwardForGrad(const Napi::CallbackInfo& info);
  Napi::Value Embed(const Napi::CallbackInfo& info);
  Napi::Value BytesByDtype(const Napi::CallbackInfo& info);
  void Dispose(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  std::shared_ptr<Executor> get(Napi::Env env);

  std::shared_ptr<Executor> model_;
};

}  // namespace jamba::napi
