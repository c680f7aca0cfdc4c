#include "model_binding.h"

#include <array>
#include <cstring>

#include "grad_binding.h"
#include "js_convert.h"
#include "promise_worker.h"

namespace jamba::napi {

// ---------------------------------------------------------------- NativeSequence

Napi::Function NativeSequence::Init(Napi::Env env) {
  return DefineClass(env, "NativeSequence",
                     {InstanceMethod<&NativeSequence::Position>("position"), InstanceMethod<&NativeSequence::Bytes>("bytes"),
                      InstanceMethod<&NativeSequence::Reset>("reset"), InstanceMethod<&NativeSequence::Dispose>("dispose"),
                      InstanceMethod<&NativeSequence::ExportState>("exportState"),
                      InstanceMethod<&NativeSequence::ImportState>("importState")});
}

NativeSequence::NativeSequence(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeSequence>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw make_error(info.Env(), "invalid_argument", "NativeSequence is created by NativeModel.newSequence()");
  auto* src = info[0].As<Napi::External<std::pair<std::shared_ptr<SequenceState>, const Executor*>>>().Data();
  state_ = src->first;
  owner_ = src->second;
}

std::shared_ptr<SequenceState> NativeSequence::state(Napi::Env env) {
  if (!state_) throw make_error(env, "disposed", "the sequence has been disposed");
  return state_;
}

Napi::Value NativeSequence::Position(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(state(info.Env())->position()));
}

Napi::Value NativeSequence::Bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(state(info.Env())->bytes()));
}

void NativeSequence::Reset(const Napi::CallbackInfo& info) {
  auto st = state(info.Env());
  if (busy_->load()) throw make_error(info.Env(), "busy", "the sequence is in use by a pending forward pass");
  try {
    st->reset();
  } catch (const Error& e) {
    throw make_error(info.Env(), e.kind, e.what());
  }
}

void NativeSequence::Dispose(const Napi::CallbackInfo&) { state_.reset(); }

// exportState() -> { position, layers: [{ conv, ssm, k, v }] } as copies (Float32Array each).
Napi::Value NativeSequence::ExportState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto st = state(env);
  if (busy_->load()) throw make_error(env, "busy", "the sequence is in use by a pending forward pass");
  auto copy = [&](const std::vector<float>& v) {
    Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
    if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(float));
    return a;
  };
  try {
    st->pull();
  } catch (const Error& e) {
    throw make_error(env, e.kind, e.what());
  }
  Napi::Array layers = Napi::Array::New(env, st->num_layers());
  for (size_t i = 0; i < st->num_layers(); ++i) {
    const LayerState& l = st->layer(i);
    Napi::Object o = Napi::Object::New(env);
    o.Set("conv", copy(l.conv));
    o.Set("ssm", copy(l.ssm));
    o.Set("k", copy(l.k));
    o.Set("v", copy(l.v));
    layers.Set(uint32_t(i), o);
  }
  st->drop_staging();
  Napi::Object out = Napi::Object::New(env);
  out.Set("position", Napi::Number::New(env, double(st->position())));
  out.Set("layers", layers);
  return out;
}

// importState(exported): checks every size against this model before replacing anything.
void NativeSequence::ImportState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto st = state(env);
  if (busy_->load()) throw make_error(env, "busy", "the sequence is in use by a pending forward pass");
  if (info.Length() != 1 || !info[0].IsObject()) throw make_error(env, "invalid_argument", "importState(state) takes an object");
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Value pv = o.Get("position"), lv = o.Get("layers");
  if (!pv.IsNumber() || !lv.IsArray()) throw make_error(env, "invalid_argument", "state needs a numeric position and a layers array");
  const double pos = pv.As<Napi::Number>().DoubleValue();
  Napi::Array layers = lv.As<Napi::Array>();
  if (!(pos >= 0) || pos != double(int64_t(pos))) throw make_error(env, "invalid_argument", "state position must be a non-negative integer");
  if (layers.Length() != st->num_layers())
    throw make_error(env, "invalid_argument", "state has " + std::to_string(layers.Length()) + " layers, the model " + std::to_string(st->num_layers()));
  const ModelDims& d = st->dims();
  const size_t kvw = size_t(d.kv_heads * d.head_dim);
  std::vector<std::array<Napi::Float32Array, 4>> arrays;
  for (uint32_t i = 0; i < layers.Length(); ++i) {
    const bool attention = st->is_attention(i);
    Napi::Value lo = layers.Get(i);
    if (!lo.IsObject()) throw make_error(env, "invalid_argument", "state layer " + std::to_string(i) + " is not an object");
    std::array<Napi::Float32Array, 4> a;
    const char* names[4] = {"conv", "ssm", "k", "v"};
    const size_t conv = size_t(d.d_inner * (d.d_conv - 1)), ssm = size_t(d.d_inner * d.d_state);
    const size_t expect[4] = {attention ? 0 : conv, attention ? 0 : ssm, attention ? size_t(pos) * kvw : 0, attention ? size_t(pos) * kvw : 0};
    for (int j = 0; j < 4; ++j) {
      Napi::Value v = lo.As<Napi::Object>().Get(names[j]);
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw make_error(env, "invalid_argument", "state layer " + std::to_string(i) + "." + names[j] + " must be a Float32Array");
      a[size_t(j)] = v.As<Napi::Float32Array>();
      if (a[size_t(j)].ElementLength() != expect[j])
        throw make_error(env, "invalid_argument", "state layer " + std::to_string(i) + "." + names[j] + " has " +
                                                      std::to_string(a[size_t(j)].ElementLength()) + " values, this model needs " +
                                                      std::to_string(expect[j]) + " at position " + std::to_string(int64_t(pos)));
    }
    arrays.push_back(a);
  }
  for (size_t i = 0; i < arrays.size(); ++i) {
    LayerState& l = st->layer(i);
    auto assign = [](std::vector<float>& dst, const Napi::Float32Array& src) { dst.assign(src.Data(), src.Data() + src.ElementLength()); };
    assign(l.conv, arrays[i][0]);
    assign(l.ssm, arrays[i][1]);
    assign(l.k, arrays[i][2]);
    assign(l.v, arrays[i][3]);
  }
  st->set_position(int64_t(pos));
  try {
    st->push();
  } catch (const Error& e) {
    st->reset();
    throw make_error(env, e.kind, e.what());
  }
}

// ---------------------------------------------------------------- NativeModel

namespace {

class LoadWorker : public PromiseWorker {
 public:
  LoadWorker(Napi::Env env, ModelPlan plan, Napi::Function on_progress) : PromiseWorker(env), plan_(std::move(plan)) {
    if (!on_progress.IsEmpty())
      progress_ = Napi::ThreadSafeFunction::New(env, on_progress, "jamba-load-progress", 0, 1);
  }
  ~LoadWorker() override {
    if (progress_) progress_.Release();
  }

 protected:
  void Work() override {
    std::function<void(uint64_t)> report;
    if (progress_) {
      report = [this](uint64_t done) {
        auto* value = new uint64_t(done);
        auto status = progress_.NonBlockingCall(value, [](Napi::Env env, Napi::Function fn, uint64_t* v) {
          fn.Call({Napi::Number::New(env, double(*v))});
          delete v;
        });
        if (status != napi_ok) delete value;
      };
    }
    model_ = make_executor(plan_, report);
  }
  void OnOK() override {
    auto* data = Env().GetInstanceData<AddonData>();
    auto holder = std::make_unique<std::shared_ptr<Executor>>(model_);
    Napi::Object obj = data->model_ctor.New({Napi::External<std::shared_ptr<Executor>>::New(Env(), holder.get())});
    deferred_.Resolve(obj);
  }

 private:
  ModelPlan plan_;
  std::shared_ptr<Executor> model_;
  Napi::ThreadSafeFunction progress_;
};

class ForwardWorker : public PromiseWorker {
 public:
  ForwardWorker(Napi::Env env, std::shared_ptr<Executor> model) : PromiseWorker(env), model_(std::move(model)) {}

  std::vector<std::shared_ptr<SequenceState>> states;
  std::vector<std::shared_ptr<std::atomic<bool>>> busy;
  ForwardRequest req;
  std::vector<Napi::ObjectReference> abort_refs;  // keep the flags' buffers alive while Work() reads them

  void release() {
    for (auto& b : busy) b->store(false);
  }

 protected:
  void Work() override { result_ = model_->forward(req); }
  void OnOK() override {
    release();
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    auto to_js = [&](const std::vector<float>& v) {
      Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
      if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(float));  // an empty array's data may be null
      return a;
    };
    out.Set("logits", to_js(result_.logits));
    if (req.hidden) out.Set("hidden", to_js(result_.hidden));
    if (!result_.sampled.empty()) {
      Napi::Int32Array a = Napi::Int32Array::New(env, result_.sampled.size());
      std::memcpy(a.Data(), result_.sampled.data(), result_.sampled.size() * 4);
      out.Set("sampled", a);
    }
    if (req.profile) out.Set("profile", profile_to_js(env, result_.profile));
    if (req.capture) {
      Napi::Object cap = Napi::Object::New(env);
      for (auto& [k, v] : result_.captured) cap.Set(k, to_js(v));
      out.Set("captured", cap);
    }
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override {
    release();
    PromiseWorker::OnError(e);
  }

 private:
  std::shared_ptr<Executor> model_;
  ForwardResult result_;
};

}  // namespace

Napi::Function NativeModel::Init(Napi::Env env) {
  return DefineClass(env, "NativeModel",
                     {StaticMethod<&NativeModel::Load>("load"), InstanceMethod<&NativeModel::NewSequence>("newSequence"),
                      InstanceMethod<&NativeModel::Forward>("forward"),
                      InstanceMethod<&NativeModel::ForwardForGrad>("forwardForGrad"),
                      InstanceMethod<&NativeModel::Embed>("embed"),
                      InstanceMethod<&NativeModel::Device>("device"),
                      InstanceMethod<&NativeModel::BytesByDtype>("bytesByDtype"),
                      InstanceMethod<&NativeModel::Dispose>("dispose")});
}

NativeModel::NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw make_error(info.Env(), "invalid_argument", "NativeModel is created by NativeModel.load(plan)");
  model_ = *info[0].As<Napi::External<std::shared_ptr<Executor>>>().Data();
}

std::shared_ptr<Executor> NativeModel::get(Napi::Env env) {
  if (!model_) throw make_error(env, "disposed", "the model has been disposed");
  return model_;
}

Napi::Value NativeModel::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) return reject_with(env, "invalid_argument", "load(plan, onProgress?) takes a plan object");
  Napi::Function on_progress;
  if (info.Length() > 1 && info[1].IsFunction()) on_progress = info[1].As<Napi::Function>();
  ModelPlan plan;
  try {
    plan = parse_plan(info[0].As<Napi::Object>());
  } catch (const Napi::Error& e) {
    return reject_with(env, "invalid_argument", "malformed model plan: " + e.Message());
  }
  auto* w = new LoadWorker(env, std::move(plan), on_progress);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value NativeModel::NewSequence(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = get(env);
  std::shared_ptr<SequenceState> state;
  try {
    state = model->new_state();  // a CUDA model may have no free slot
  } catch (const Error& e) {
    throw make_error(env, e.kind, e.what());
  }
  std::pair<std::shared_ptr<SequenceState>, const Executor*> src{state, model.get()};
  auto* data = env.GetInstanceData<AddonData>();
  return data->sequence_ctor.New({Napi::External<decltype(src)>::New(env, &src)});
}

// embed(ids: Int32Array) → Float32Array of ids.length × hidden: the rows forward() would use.
Napi::Value NativeModel::Embed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = get(env);
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw make_error(env, "invalid_argument", "embed(ids) takes an Int32Array");
  Napi::Int32Array ids = info[0].As<Napi::Int32Array>();
  std::vector<float> rows;
  try {
    rows = model->embed(std::vector<int32_t>(ids.Data(), ids.Data() + ids.ElementLength()));
  } catch (const Error& e) {
    throw make_error(env, e.kind, e.what());
  }
  Napi::Float32Array out = Napi::Float32Array::New(env, rows.size());
  if (!rows.empty()) std::memcpy(out.Data(), rows.data(), rows.size() * sizeof(float));
  return out;
}

// forward(sequences, tokens: Int32Array[], { logits: 'all'|'last'|'none', capture?: boolean, hidden?: boolean, profile?: boolean,
//         embeds?: (Float32Array|undefined)[], abort?: (Int32Array|undefined)[] })
Napi::Value NativeModel::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!model_) return reject_with(env, "disposed", "the model has been disposed");
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsArray() || !info[2].IsObject())
    return reject_with(env, "invalid_argument", "forward(sequences, tokens, options)");
  Napi::Array seqs = info[0].As<Napi::Array>(), toks = info[1].As<Napi::Array>();
  Napi::Object opts = info[2].As<Napi::Object>();
  if (seqs.Length() != toks.Length() || seqs.Length() == 0)
    return reject_with(env, "invalid_argument", "forward: one token array per sequence, at least one sequence");
  auto* w = new ForwardWorker(env, model_);
  Napi::Promise p = w->promise();
  auto fail_js = [&](const std::string& kind, const std::string& msg) {
    w->release();
    delete w;
    return reject_with(env, kind, msg);
  };
  for (uint32_t i = 0; i < seqs.Length(); ++i) {
    Napi::Value sv = seqs.Get(i);
    if (!sv.IsObject() || !sv.As<Napi::Object>().InstanceOf(env.GetInstanceData<AddonData>()->sequence_ctor.Value()))
      return fail_js("invalid_argument", "forward: sequences[" + std::to_string(i) + "] is not a sequence");
    NativeSequence* s = NativeSequence::Unwrap(sv.As<Napi::Object>());
    if (!s->state_) return fail_js("disposed", "forward: sequences[" + std::to_string(i) + "] has been disposed");
    if (s->owner_ != model_.get()) return fail_js("invalid_argument", "forward: sequences[" + std::to_string(i) + "] belongs to another model");
    bool expected = false;
    if (!s->busy()->compare_exchange_strong(expected, true))
      return fail_js("busy", "forward: sequences[" + std::to_string(i) + "] is already in a pending forward pass");
    w->busy.push_back(s->busy());
    w->states.push_back(s->state_);
    w->req.states.push_back(s->state_.get());
    Napi::Value tv = toks.Get(i);
    if (!tv.IsTypedArray() || tv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      return fail_js("invalid_argument", "forward: tokens[" + std::to_string(i) + "] must be an Int32Array");
    Napi::Int32Array ta = tv.As<Napi::Int32Array>();
    w->req.tokens.emplace_back(ta.Data(), ta.Data() + ta.ElementLength());
  }
  std::string mode = opts.Has("logits") ? opts.Get("logits").ToString().Utf8Value() : "all";
  if (mode == "all") w->req.logits = ForwardRequest::Logits::All;
  else if (mode == "last") w->req.logits = ForwardRequest::Logits::Last;
  else if (mode == "none") w->req.logits = ForwardRequest::Logits::None;
  else return fail_js("invalid_argument", "forward: options.logits must be 'all', 'last' or 'none'");
  w->req.capture = opts.Has("capture") && opts.Get("capture").ToBoolean();
  w->req.hidden = opts.Has("hidden") && opts.Get("hidden").ToBoolean();
  w->req.profile = opts.Has("profile") && opts.Get("profile").ToBoolean();
  if (opts.Has("sample") && !opts.Get("sample").IsUndefined()) {
    Napi::Value sv = opts.Get("sample");
    if (!sv.IsArray() || sv.As<Napi::Array>().Length() != seqs.Length())
      return fail_js("invalid_argument", "forward: options.sample must hold one object (or undefined) per sequence");
    Napi::Array list = sv.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); ++i) {
      Napi::Value v = list.Get(i);
      SampleSpec spec;
      if (v.IsObject()) {
        Napi::Object o = v.As<Napi::Object>();
        auto num = [&](const char* k, double d) { return o.Has(k) && o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().DoubleValue() : d; };
        spec.on = true;
        spec.temperature = float(num("temperature", 0));
        spec.top_k = int(num("topK", 0));
        spec.top_p = float(num("topP", 1));
        spec.min_p = float(num("minP", 0));
        spec.seed = uint64_t(num("seed", 0));
        spec.step = uint64_t(num("step", 0));
        if (!(spec.temperature >= 0) || spec.top_k < 0 || !(spec.top_p > 0 && spec.top_p <= 1) || !(spec.min_p >= 0 && spec.min_p <= 1))
          return fail_js("invalid_argument", "forward: options.sample[" + std::to_string(i) + "] has an invalid temperature, topK, topP or minP");
        if (o.Has("mask") && !o.Get("mask").IsUndefined()) {
          Napi::Value mv = o.Get("mask");
          if (!mv.IsTypedArray() || mv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
            return fail_js("invalid_argument", "forward: options.sample[" + std::to_string(i) + "].mask must be an Int32Array");
          Napi::Int32Array m = mv.As<Napi::Int32Array>();
          spec.mask.assign(reinterpret_cast<const uint32_t*>(m.Data()), reinterpret_cast<const uint32_t*>(m.Data()) + m.ElementLength());
        }
      }
      w->req.sample.push_back(spec);
    }
  }
  if (opts.Has("embeds") && !opts.Get("embeds").IsUndefined()) {
    Napi::Value ev = opts.Get("embeds");
    if (!ev.IsArray() || ev.As<Napi::Array>().Length() != seqs.Length())
      return fail_js("invalid_argument", "forward: options.embeds must hold one Float32Array (or undefined) per sequence");
    Napi::Array rows = ev.As<Napi::Array>();
    const size_t H = size_t(model_->dims().hidden);
    for (uint32_t i = 0; i < rows.Length(); ++i) {
      Napi::Value r = rows.Get(i);
      if (r.IsUndefined() || r.IsNull()) {
        w->req.embeds.emplace_back();
        continue;
      }
      if (!r.IsTypedArray() || r.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        return fail_js("invalid_argument", "forward: options.embeds[" + std::to_string(i) + "] must be a Float32Array");
      Napi::Float32Array fa = r.As<Napi::Float32Array>();
      if (fa.ElementLength() % H != 0)
        return fail_js("invalid_argument", "forward: options.embeds[" + std::to_string(i) + "] has " + std::to_string(fa.ElementLength()) +
                                               " floats, not a multiple of the hidden size " + std::to_string(H));
      w->req.embeds.emplace_back(fa.Data(), fa.Data() + fa.ElementLength());
    }
  }
  if (opts.Has("abort") && !opts.Get("abort").IsUndefined()) {
    Napi::Value av = opts.Get("abort");
    if (!av.IsArray() || av.As<Napi::Array>().Length() != seqs.Length())
      return fail_js("invalid_argument", "forward: options.abort must hold one Int32Array (or undefined) per sequence");
    Napi::Array flags = av.As<Napi::Array>();
    for (uint32_t i = 0; i < flags.Length(); ++i) {
      Napi::Value f = flags.Get(i);
      if (f.IsUndefined() || f.IsNull()) {
        w->req.abort.push_back(nullptr);
        continue;
      }
      if (!f.IsTypedArray() || f.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || f.As<Napi::Int32Array>().ElementLength() < 1)
        return fail_js("invalid_argument", "forward: options.abort[" + std::to_string(i) + "] must be a non-empty Int32Array");
      w->abort_refs.push_back(Napi::Persistent(f.As<Napi::Object>()));
      w->req.abort.push_back(f.As<Napi::Int32Array>().Data());
    }
  }
  w->Queue();
  return p;
}

Napi::Value NativeModel::ForwardForGrad(const Napi::CallbackInfo& info) {
  if (!model_) return reject_with(info.Env(), "disposed", "the model has been disposed");
  return forward_for_grad(info, model_);
}

Napi::Value NativeModel::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), get(info.Env())->device());
}

Napi::Value NativeModel::BytesByDtype(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  for (auto& [k, v] : get(env)->bytes_by_dtype()) out.Set(k, Napi::Number::New(env, double(v)));
  return out;
}

void NativeModel::Dispose(const Napi::CallbackInfo&) {
  // Pending workers hold their own reference; the weights go when the last of them finishes.
  model_.reset();
}

}  // namespace jamba::napi
