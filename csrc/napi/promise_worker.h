// Native work on the libuv pool that settles a promise; native errors keep their kind.
#pragma once
#include <napi.h>

#include <new>
#include <stdexcept>
#include <string>

#include "../core/error.h"
#include "js_convert.h"

namespace jamba::napi {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  virtual void Work() = 0;
  void Execute() final {
    try {
      Work();
    } catch (const Error& e) {
      kind_ = e.kind;
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      kind_ = "out_of_memory";
      SetError("out of memory");
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(make_error(Env(), kind_, e.Message()).Value()); }

  Napi::Promise::Deferred deferred_;
  std::string kind_ = "internal";
};

}  // namespace jamba::napi
