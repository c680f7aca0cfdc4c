#include "grad_binding.h"

#include <cstring>

#include "js_convert.h"
#include "model_binding.h"
#include "promise_worker.h"

namespace jamba::napi {

namespace {

Napi::Float32Array to_js(Napi::Env env, const std::vector<float>& v) {
  Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(float));  // an empty array's data may be null
  return a;
}

Napi::Array arrays_to_js(Napi::Env env, const std::vector<std::vector<float>>& rows) {
  Napi::Array out = Napi::Array::New(env, rows.size());
  for (size_t i = 0; i < rows.size(); ++i) out.Set(uint32_t(i), to_js(env, rows[i]));
  return out;
}

// A typed array of the given type, or an error naming `what`.
template <typename A>
A typed(const Napi::Value& v, napi_typedarray_type type, const std::string& what, const char* kind) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw make_error(v.Env(), "invalid_argument", what + " must be " + kind);
  return v.As<A>();
}

const int32_t* abort_flag(const Napi::Object& opts, std::vector<Napi::ObjectReference>& keep) {
  if (!opts.Has("abort") || opts.Get("abort").IsUndefined()) return nullptr;
  auto a = typed<Napi::Int32Array>(opts.Get("abort"), napi_int32_array, "options.abort", "an Int32Array");
  if (a.ElementLength() < 1) throw make_error(opts.Env(), "invalid_argument", "options.abort must not be empty");
  keep.push_back(Napi::Persistent(a.As<Napi::Object>()));
  return a.Data();
}

class GradForwardWorker : public PromiseWorker {
 public:
  GradForwardWorker(Napi::Env env, std::shared_ptr<Executor> model) : PromiseWorker(env), model_(std::move(model)) {}
  GradRequest req;
  std::vector<Napi::ObjectReference> keep;

 protected:
  void Work() override { tape_ = model_->forward_for_grad(req); }
  void OnOK() override {
    Napi::Env env = Env();
    std::shared_ptr<GradTape> tape(std::move(tape_));
    auto holder = std::make_pair(tape, model_);
    Napi::Object handle = env.GetInstanceData<AddonData>()->grad_tape_ctor.New({Napi::External<decltype(holder)>::New(env, &holder)});
    Napi::Object out = Napi::Object::New(env);
    out.Set("tape", handle);
    out.Set("loss", Napi::Number::New(env, tape->loss));
    Napi::Float64Array per = Napi::Float64Array::New(env, tape->example_loss.size());
    for (size_t i = 0; i < tape->example_loss.size(); ++i) per[i] = tape->example_loss[i];
    out.Set("exampleLoss", per);
    if (req.hidden) out.Set("hidden", arrays_to_js(env, tape->hidden));
    if (req.logits) out.Set("logits", arrays_to_js(env, tape->logits));
    if (req.routing) {
      Napi::Array layers = Napi::Array::New(env, tape->routing.size());
      for (size_t l = 0; l < tape->routing.size(); ++l) {
        if (tape->routing[l].empty()) {
          layers.Set(uint32_t(l), env.Null());
          continue;
        }
        Napi::Array ex = Napi::Array::New(env, tape->routing[l].size());
        for (size_t e = 0; e < tape->routing[l].size(); ++e) {
          Napi::Int32Array a = Napi::Int32Array::New(env, tape->routing[l][e].size());
          if (!tape->routing[l][e].empty()) std::memcpy(a.Data(), tape->routing[l][e].data(), tape->routing[l][e].size() * 4);
          ex.Set(uint32_t(e), a);
        }
        layers.Set(uint32_t(l), ex);
      }
      out.Set("routing", layers);
    }
    tape->hidden.clear();
    tape->logits.clear();
    deferred_.Resolve(out);
  }

 private:
  std::shared_ptr<Executor> model_;
  std::unique_ptr<GradTape> tape_;
};

class BackwardWorker : public PromiseWorker {
 public:
  BackwardWorker(Napi::Env env, std::shared_ptr<GradTape> tape, std::shared_ptr<Executor> model)
      : PromiseWorker(env), tape_(std::move(tape)), model_(std::move(model)) {}
  BackwardRequest req;
  std::vector<Napi::ObjectReference> keep;

 protected:
  void Work() override { res_ = tape_->backward(req); }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("rows", arrays_to_js(env, res_.d_rows));
    if (req.initial_state) {
      Napi::Array ex = Napi::Array::New(env, res_.d_initial.size());
      for (size_t e = 0; e < res_.d_initial.size(); ++e) {
        Napi::Array layers = Napi::Array::New(env, res_.d_initial[e].size());
        for (size_t l = 0; l < res_.d_initial[e].size(); ++l) {
          const LayerState& s = res_.d_initial[e][l];
          Napi::Object o = Napi::Object::New(env);
          o.Set("conv", to_js(env, s.conv));
          o.Set("ssm", to_js(env, s.ssm));
          o.Set("k", to_js(env, s.k));
          o.Set("v", to_js(env, s.v));
          layers.Set(uint32_t(l), o);
        }
        ex.Set(uint32_t(e), layers);
      }
      out.Set("initial", ex);
    }
    if (!res_.profile.empty()) out.Set("profile", profile_to_js(env, res_.profile));
    deferred_.Resolve(out);
  }

 private:
  std::shared_ptr<GradTape> tape_;
  std::shared_ptr<Executor> model_;
  GradResult res_;
};

}  // namespace

Napi::Function NativeGradTape::Init(Napi::Env env) {
  return DefineClass(env, "NativeGradTape",
                     {InstanceMethod<&NativeGradTape::Backward>("backward"), InstanceMethod<&NativeGradTape::Dispose>("dispose")});
}

NativeGradTape::NativeGradTape(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeGradTape>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw make_error(info.Env(), "invalid_argument", "a NativeGradTape is made by NativeModel.forwardForGrad()");
  auto* src = info[0].As<Napi::External<std::pair<std::shared_ptr<GradTape>, std::shared_ptr<Executor>>>>().Data();
  tape_ = src->first;
  model_ = src->second;
}

// backward({ dHidden?: (Float32Array | undefined)[], initialState?: boolean, profile?: boolean, abort?: Int32Array })
//   → Promise<{ rows: Float32Array[], initial?: { conv, ssm, k, v }[][], profile?: { op, ms }[] }>
Napi::Value NativeGradTape::Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!tape_) return reject_with(env, "disposed", "the tape has been used or disposed: a tape runs backward once");
  auto* w = new BackwardWorker(env, tape_, model_);
  Napi::Promise p = w->promise();
  try {
    Napi::Object opts = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
    w->req.initial_state = opts.Has("initialState") && opts.Get("initialState").ToBoolean();
    w->req.profile = opts.Has("profile") && opts.Get("profile").ToBoolean();
    w->req.abort = abort_flag(opts, w->keep);
    if (opts.Has("dHidden") && !opts.Get("dHidden").IsUndefined()) {
      if (!opts.Get("dHidden").IsArray()) throw make_error(env, "invalid_argument", "options.dHidden must be an array");
      Napi::Array list = opts.Get("dHidden").As<Napi::Array>();
      for (uint32_t i = 0; i < list.Length(); ++i) {
        Napi::Value v = list.Get(i);
        if (v.IsUndefined() || v.IsNull()) {
          w->req.d_hidden.emplace_back();
          continue;
        }
        auto a = typed<Napi::Float32Array>(v, napi_float32_array, "options.dHidden[" + std::to_string(i) + "]", "a Float32Array");
        w->req.d_hidden.emplace_back(a.Data(), a.Data() + a.ElementLength());
      }
    }
  } catch (const Napi::Error& e) {
    delete w;
    return reject_with(env, e.Get("code").ToString().Utf8Value(), e.Message());
  }
  tape_.reset();  // one backward: the worker holds it now, and frees it when done
  w->Queue();
  return p;
}

void NativeGradTape::Dispose(const Napi::CallbackInfo&) { tape_.reset(); }

// examples: [{ ids: Int32Array (-1: the next vector row), embeds: Float32Array, targetRows: Int32Array,
//              targetIds: Int32Array, targetWeights: Float32Array, initial?: NativeSequence }]
// options: { stopAtLayer?: number, hidden?: boolean, logits?: boolean, abort?: Int32Array }
Napi::Value forward_for_grad(const Napi::CallbackInfo& info, const std::shared_ptr<Executor>& model) {
  Napi::Env env = info.Env();
  auto* w = new GradForwardWorker(env, model);
  Napi::Promise p = w->promise();
  try {
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsObject()) throw make_error(env, "invalid_argument", "forwardForGrad(examples, options)");
    Napi::Array list = info[0].As<Napi::Array>();
    Napi::Object opts = info[1].As<Napi::Object>();
    for (uint32_t i = 0; i < list.Length(); ++i) {
      const std::string where = "examples[" + std::to_string(i) + "]";
      if (!list.Get(i).IsObject()) throw make_error(env, "invalid_argument", where + " must be an object");
      Napi::Object o = list.Get(i).As<Napi::Object>();
      GradExample ex;
      auto ids = typed<Napi::Int32Array>(o.Get("ids"), napi_int32_array, where + ".ids", "an Int32Array");
      auto embeds = typed<Napi::Float32Array>(o.Get("embeds"), napi_float32_array, where + ".embeds", "a Float32Array");
      auto rows = typed<Napi::Int32Array>(o.Get("targetRows"), napi_int32_array, where + ".targetRows", "an Int32Array");
      auto tid = typed<Napi::Int32Array>(o.Get("targetIds"), napi_int32_array, where + ".targetIds", "an Int32Array");
      auto tw = typed<Napi::Float32Array>(o.Get("targetWeights"), napi_float32_array, where + ".targetWeights", "a Float32Array");
      ex.ids.assign(ids.Data(), ids.Data() + ids.ElementLength());
      ex.embeds.assign(embeds.Data(), embeds.Data() + embeds.ElementLength());
      ex.target_rows.assign(rows.Data(), rows.Data() + rows.ElementLength());
      ex.target_ids.assign(tid.Data(), tid.Data() + tid.ElementLength());
      ex.target_weights.assign(tw.Data(), tw.Data() + tw.ElementLength());
      if (o.Has("initial") && !o.Get("initial").IsUndefined()) {
        Napi::Value sv = o.Get("initial");
        if (!sv.IsObject() || !sv.As<Napi::Object>().InstanceOf(env.GetInstanceData<AddonData>()->sequence_ctor.Value()))
          throw make_error(env, "invalid_argument", where + ".initial must be a sequence");
        NativeSequence* s = NativeSequence::Unwrap(sv.As<Napi::Object>());
        if (!s->state_) throw make_error(env, "disposed", where + ".initial has been disposed");
        if (s->owner_ != model.get()) throw make_error(env, "invalid_argument", where + ".initial belongs to another model");
        if (s->busy()->load()) throw make_error(env, "busy", where + ".initial is in a pending forward pass");
        // A host copy, taken now: the sequence stays free to run while the pass reads its state,
        // and no device slot is held for it (a CUDA model's slots are its maxSequences).
        std::vector<bool> attention(s->state_->num_layers());
        for (size_t l = 0; l < attention.size(); ++l) attention[l] = s->state_->is_attention(l);
        std::shared_ptr<SequenceState> copy = std::make_shared<SequenceState>(s->state_->dims(), attention);
        s->state_->pull();
        for (size_t l = 0; l < copy->num_layers(); ++l) copy->layer(l) = s->state_->layer(l);
        copy->set_position(s->state_->position());
        s->state_->drop_staging();
        ex.initial = copy;
      }
      w->req.examples.push_back(std::move(ex));
    }
    if (opts.Has("stopAtLayer") && !opts.Get("stopAtLayer").IsUndefined()) {
      if (!opts.Get("stopAtLayer").IsNumber()) throw make_error(env, "invalid_argument", "options.stopAtLayer must be a number");
      w->req.stop_at_layer = int64_t(opts.Get("stopAtLayer").As<Napi::Number>().Int64Value());
      if (w->req.stop_at_layer < 0) throw make_error(env, "invalid_argument", "options.stopAtLayer must be 0 or more");
    }
    w->req.hidden = opts.Has("hidden") && opts.Get("hidden").ToBoolean();
    w->req.logits = opts.Has("logits") && opts.Get("logits").ToBoolean();
    w->req.routing = opts.Has("routing") && opts.Get("routing").ToBoolean();
    w->req.keep_activations = opts.Has("keepActivations") && opts.Get("keepActivations").ToBoolean();
    w->req.abort = abort_flag(opts, w->keep);
  } catch (const Error& e) {
    delete w;
    return reject_with(env, e.kind, e.what());
  } catch (const Napi::Error& e) {
    delete w;
    return reject_with(env, e.Get("code").ToString().Utf8Value(), e.Message());
  }
  w->Queue();
  return p;
}

}  // namespace jamba::napi
