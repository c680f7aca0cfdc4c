#include "js_convert.h"

namespace jamba::napi {

Napi::Error make_error(Napi::Env env, const std::string& kind, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, kind));
  return e;
}

Napi::Value reject_with(Napi::Env env, const std::string& kind, const std::string& message) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(make_error(env, kind, message).Value());
  return d.Promise();
}

DType parse_dtype(const Napi::Env& env, const std::string& s) {
  if (s == "F32") return DType::F32;
  if (s == "BF16") return DType::BF16;
  if (s == "F16") return DType::F16;
  if (s == "I8") return DType::I8;
  if (s == "I32") return DType::I32;
  throw make_error(env, "invalid_argument", "unsupported dtype " + s);
}

int64_t get_int(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw make_error(o.Env(), "invalid_argument", std::string("plan field ") + key + " must be a number");
  return v.As<Napi::Number>().Int64Value();
}

namespace {

TensorSource parse_source(const Napi::Object& parent, const char* key) {
  TensorSource s;
  Napi::Value v = parent.Get(key);
  if (v.IsUndefined() || v.IsNull()) return s;
  Napi::Object o = v.As<Napi::Object>();
  Napi::Env env = o.Env();
  s.name = o.Get("name").As<Napi::String>().Utf8Value();
  s.file = o.Get("file").As<Napi::String>().Utf8Value();
  s.offset = uint64_t(o.Get("offset").As<Napi::Number>().Int64Value());
  s.nbytes = uint64_t(o.Get("nbytes").As<Napi::Number>().Int64Value());
  s.dtype = parse_dtype(env, o.Get("dtype").As<Napi::String>().Utf8Value());
  Napi::Array shape = o.Get("shape").As<Napi::Array>();
  for (uint32_t i = 0; i < shape.Length(); ++i) s.shape.push_back(shape.Get(i).As<Napi::Number>().Int64Value());
  return s;
}

MlpSources parse_mlp(const Napi::Object& o) {
  return MlpSources{parse_source(o, "gate"), parse_source(o, "up"), parse_source(o, "down")};
}

}  // namespace

ModelPlan parse_plan(const Napi::Object& plan) {
  ModelPlan p;
  Napi::Object d = plan.Get("dims").As<Napi::Object>();
  ModelDims& m = p.dims;
  m.vocab = get_int(d, "vocab");
  m.hidden = get_int(d, "hidden");
  m.intermediate = get_int(d, "intermediate");
  m.layers = get_int(d, "layers");
  m.heads = get_int(d, "heads");
  m.kv_heads = get_int(d, "kvHeads");
  m.head_dim = get_int(d, "headDim");
  m.d_inner = get_int(d, "dInner");
  m.d_state = get_int(d, "dState");
  m.d_conv = get_int(d, "dConv");
  m.dt_rank = get_int(d, "dtRank");
  m.experts = get_int(d, "experts");
  m.top_k = get_int(d, "topK");
  m.eps = d.Get("eps").As<Napi::Number>().FloatValue();
  p.experts_int8 = plan.Get("expertsInt8").ToBoolean();
  if (plan.Has("device") && plan.Get("device").IsString()) p.device = plan.Get("device").ToString().Utf8Value();
  if (plan.Has("maxSequences") && plan.Get("maxSequences").IsNumber()) p.max_sequences = get_int(plan, "maxSequences");
  if (plan.Has("contextLength") && plan.Get("contextLength").IsNumber()) p.context_length = get_int(plan, "contextLength");
  p.synthetic = plan.Has("synthetic") && plan.Get("synthetic").ToBoolean();
  p.embed = parse_source(plan, "embed");
  p.final_norm = parse_source(plan, "finalNorm");
  p.lm_head = parse_source(plan, "lmHead");
  Napi::Array layers = plan.Get("layers").As<Napi::Array>();
  for (uint32_t i = 0; i < layers.Length(); ++i) {
    Napi::Object lo = layers.Get(i).As<Napi::Object>();
    LayerPlan l;
    l.attention = lo.Get("mixer").As<Napi::String>().Utf8Value() == "attention";
    l.moe = lo.Get("feedForward").As<Napi::String>().Utf8Value() == "moe";
    l.input_norm = parse_source(lo, "inputNorm");
    l.ff_norm = parse_source(lo, "ffNorm");
    if (l.attention) {
      Napi::Object a = lo.Get("attention").As<Napi::Object>();
      l.attn = AttentionSources{parse_source(a, "q"), parse_source(a, "k"), parse_source(a, "v"), parse_source(a, "o")};
    } else {
      Napi::Object mm = lo.Get("mamba").As<Napi::Object>();
      MambaSources& s = l.mamba;
      s.in_proj = parse_source(mm, "inProj");
      s.in_proj_bias = parse_source(mm, "inProjBias");
      s.conv_weight = parse_source(mm, "convWeight");
      s.conv_bias = parse_source(mm, "convBias");
      s.x_proj = parse_source(mm, "xProj");
      s.dt_proj = parse_source(mm, "dtProj");
      s.dt_proj_bias = parse_source(mm, "dtProjBias");
      s.a_log = parse_source(mm, "aLog");
      s.d = parse_source(mm, "d");
      s.out_proj = parse_source(mm, "outProj");
      s.out_proj_bias = parse_source(mm, "outProjBias");
      s.dt_norm = parse_source(mm, "dtNorm");
      s.b_norm = parse_source(mm, "bNorm");
      s.c_norm = parse_source(mm, "cNorm");
    }
    if (l.moe) {
      l.router = parse_source(lo, "router");
      Napi::Array ex = lo.Get("experts").As<Napi::Array>();
      for (uint32_t e = 0; e < ex.Length(); ++e) l.experts.push_back(parse_mlp(ex.Get(e).As<Napi::Object>()));
    } else {
      l.mlp = parse_mlp(lo.Get("mlp").As<Napi::Object>());
    }
    p.layers.push_back(std::move(l));
  }
  return p;
}

Napi::Array profile_to_js(Napi::Env env, const std::vector<std::pair<std::string, double>>& profile) {
  Napi::Array out = Napi::Array::New(env, profile.size());
  for (size_t i = 0; i < profile.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("op", profile[i].first);
    o.Set("ms", profile[i].second);
    out.Set(uint32_t(i), o);
  }
  return out;
}

}  // namespace jamba::napi
