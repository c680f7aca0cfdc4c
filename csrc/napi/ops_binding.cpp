#include "ops_binding.h"

#include <chrono>
#include <cmath>
#include <cstring>

#include "../core/cut_sampling.h"
#include "../core/decode_rules.h"
#include "../core/thread_pool.h"
#include "../cpu/attention.h"
#include "../cpu/conv1d.h"
#include "../cpu/gemm.h"
#include "../cpu/moe.h"
#include "../cpu/norm.h"
#include "../cpu/peak.h"
#include "../cpu/ssm_scan.h"
#include "../model/safetensors_header.h"
#include "js_convert.h"

namespace jamba::napi {

namespace {

// Checks that argument i is a typed array of the right kind and at least `need` elements.
template <typename A>
A arg(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type type, size_t need, const char* name) {
  Napi::Env env = info.Env();
  if (i >= info.Length() || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != type)
    throw make_error(env, "invalid_argument", std::string(name) + " has the wrong type");
  A a = info[i].As<A>();
  if (a.ElementLength() < need)
    throw make_error(env, "invalid_argument", std::string(name) + " has " + std::to_string(a.ElementLength()) +
                                                  " elements, needs " + std::to_string(need));
  return a;
}

int64_t num(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t min = 0) {
  if (i >= info.Length() || !info[i].IsNumber()) throw make_error(info.Env(), "invalid_argument", std::string(name) + " must be a number");
  int64_t v = info[i].As<Napi::Number>().Int64Value();
  if (v < min || v > (int64_t(1) << 40)) throw make_error(info.Env(), "invalid_argument", std::string(name) + " is out of range");
  return v;
}

Napi::Float32Array f32_out(Napi::Env env, size_t n) { return Napi::Float32Array::New(env, n); }

// gemm(x: Float32Array, m, w: Float32Array | Uint16Array(bf16 bits), n, k, mode: 'f32'|'bf16'|'int8', bias?)
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t m = num(info, 1, "m"), n = num(info, 3, "n", 1), k = num(info, 4, "k");
  std::string mode = info[5].ToString().Utf8Value();
  auto x = arg<Napi::Float32Array>(info, 0, napi_float32_array, size_t(m * k), "x");
  cpu::PackedWeight w;
  if (mode == "bf16") {
    auto wa = arg<Napi::Uint16Array>(info, 2, napi_uint16_array, size_t(n * k), "w");
    w = cpu::pack_weight(wa.Data(), DType::BF16, n, k);
  } else if (mode == "f32" || mode == "int8") {
    auto wa = arg<Napi::Float32Array>(info, 2, napi_float32_array, size_t(n * k), "w");
    w = mode == "f32" ? cpu::pack_weight(wa.Data(), DType::F32, n, k) : cpu::pack_weight_int8(wa.Data(), DType::F32, n, k);
  } else {
    throw make_error(env, "invalid_argument", "mode must be f32, bf16 or int8");
  }
  if (info.Length() > 6 && info[6].IsTypedArray()) {
    auto b = arg<Napi::Float32Array>(info, 6, napi_float32_array, size_t(n), "bias");
    w.bias = Tensor::empty(DType::F32, {n});
    std::memcpy(w.bias.raw(), b.Data(), size_t(n) * 4);
  }
  auto out = f32_out(env, size_t(m * n));
  cpu::gemm(x.Data(), k, m, w, out.Data(), n);
  return out;
}

// gemmRate(x, m, w, n, k, mode, seconds) -> GFLOP/s of repeated products with the weight packed
// once, as the model uses them (bench/ only).
Napi::Value GemmRate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t m = num(info, 1, "m", 1), n = num(info, 3, "n", 1), k = num(info, 4, "k", 1);
  std::string mode = info[5].ToString().Utf8Value();
  double seconds = info[6].As<Napi::Number>().DoubleValue();
  auto x = arg<Napi::Float32Array>(info, 0, napi_float32_array, size_t(m * k), "x");
  cpu::PackedWeight w;
  if (mode == "bf16") w = cpu::pack_weight(arg<Napi::Uint16Array>(info, 2, napi_uint16_array, size_t(n * k), "w").Data(), DType::BF16, n, k);
  else if (mode == "f32") w = cpu::pack_weight(arg<Napi::Float32Array>(info, 2, napi_float32_array, size_t(n * k), "w").Data(), DType::F32, n, k);
  else w = cpu::pack_weight_int8(arg<Napi::Float32Array>(info, 2, napi_float32_array, size_t(n * k), "w").Data(), DType::F32, n, k);
  std::vector<float> out(size_t(m * n));
  cpu::gemm(x.Data(), k, m, w, out.data(), n);  // warm-up
  int64_t iters = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    cpu::gemm(x.Data(), k, m, w, out.data(), n);
    ++iters;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return Napi::Number::New(env, 2.0 * double(m * n * k) * double(iters) / elapsed / 1e9);
}

// quantizeInt8(w: Float32Array, n, k) -> { q: Int8Array, scale: Float32Array }
Napi::Value QuantizeInt8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t n = num(info, 1, "n"), k = num(info, 2, "k");
  auto w = arg<Napi::Float32Array>(info, 0, napi_float32_array, size_t(n * k), "w");
  auto q = Napi::Int8Array::New(env, size_t(n * k));
  auto s = f32_out(env, size_t(n));
  cpu::quantize_int8_rows(w.Data(), n, k, q.Data(), s.Data());
  Napi::Object o = Napi::Object::New(env);
  o.Set("q", q);
  o.Set("scale", s);
  return o;
}

// rmsnorm(x, rows, cols, weight, eps)
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t rows = num(info, 1, "rows"), cols = num(info, 2, "cols", 1);
  auto x = arg<Napi::Float32Array>(info, 0, napi_float32_array, size_t(rows * cols), "x");
  auto w = arg<Napi::Float32Array>(info, 3, napi_float32_array, size_t(cols), "weight");
  float eps = info[4].As<Napi::Number>().FloatValue();
  auto out = f32_out(env, size_t(rows * cols));
  cpu::rmsnorm(x.Data(), cols, rows, cols, w.Data(), eps, out.Data(), cols);
  return out;
}

// conv1d(x [T,C], T, C, w [C,width], width, bias [C] | null, state [C,width-1] (updated in place)) -> out
Napi::Value Conv1d(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t t = num(info, 1, "T"), c = num(info, 2, "C"), width = num(info, 4, "width", 1);
  auto x = arg<Napi::Float32Array>(info, 0, napi_float32_array, size_t(t * c), "x");
  auto w = arg<Napi::Float32Array>(info, 3, napi_float32_array, size_t(c * width), "w");
  const float* bias = nullptr;
  if (info[5].IsTypedArray()) bias = arg<Napi::Float32Array>(info, 5, napi_float32_array, size_t(c), "bias").Data();
  auto state = arg<Napi::Float32Array>(info, 6, napi_float32_array, size_t(c * (width - 1)), "state");
  auto out = f32_out(env, size_t(t * c));
  cpu::causal_conv1d_silu(x.Data(), c, t, c, w.Data(), width, bias, state.Data(), out.Data(), c);
  return out;
}

// selectiveScan(u, dt, b, c, z, a, d, dtBias, T, Di, N, state (updated in place), stepBatch?) -> y
// With stepBatch = S > 0, runs the decode update: T must equal S and state holds S states back to back.
Napi::Value SelectiveScan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t t = num(info, 8, "T"), di = num(info, 9, "Di", 1), n = num(info, 10, "N", 1);
  int64_t batch = info.Length() > 12 ? num(info, 12, "stepBatch") : 0;
  if (batch > 0 && batch != t) throw make_error(env, "invalid_argument", "stepBatch must equal T");
  cpu::ScanArgs a{};
  a.u = arg<Napi::Float32Array>(info, 0, napi_float32_array, size_t(t * di), "u").Data(); a.ldu = di;
  a.dt = arg<Napi::Float32Array>(info, 1, napi_float32_array, size_t(t * di), "dt").Data(); a.lddt = di;
  a.b = arg<Napi::Float32Array>(info, 2, napi_float32_array, size_t(t * n), "b").Data(); a.ldb = n;
  a.c = arg<Napi::Float32Array>(info, 3, napi_float32_array, size_t(t * n), "c").Data(); a.ldc = n;
  a.z = arg<Napi::Float32Array>(info, 4, napi_float32_array, size_t(t * di), "z").Data(); a.ldz = di;
  a.a = arg<Napi::Float32Array>(info, 5, napi_float32_array, size_t(di * n), "a").Data();
  a.d_skip = arg<Napi::Float32Array>(info, 6, napi_float32_array, size_t(di), "d").Data();
  a.dt_bias = arg<Napi::Float32Array>(info, 7, napi_float32_array, size_t(di), "dtBias").Data();
  auto state = arg<Napi::Float32Array>(info, 11, napi_float32_array, size_t(di * n * std::max<int64_t>(batch, 1)), "state");
  auto y = f32_out(env, size_t(t * di));
  a.y = y.Data(); a.ldy = di;
  a.d_inner = di; a.d_state = n;
  if (batch > 0) {
    std::vector<float*> states;
    for (int64_t s = 0; s < batch; ++s) states.push_back(state.Data() + s * di * n);
    a.t_len = 1;
    cpu::selective_state_update(a, states.data(), batch);
  } else {
    a.t_len = t;
    cpu::selective_scan(a, state.Data());
  }
  return y;
}

// attention(q [T, heads*hd], k [past+T, kv*hd], v, T, past, heads, kvHeads, headDim) -> out
Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t t = num(info, 3, "T"), past = num(info, 4, "past"), heads = num(info, 5, "heads", 1),
          kvh = num(info, 6, "kvHeads", 1), hd = num(info, 7, "headDim", 1);
  if (heads % kvh) throw make_error(env, "invalid_argument", "heads must be a multiple of kvHeads");
  cpu::AttentionArgs a{};
  a.q = arg<Napi::Float32Array>(info, 0, napi_float32_array, size_t(t * heads * hd), "q").Data(); a.ldq = heads * hd;
  a.k = arg<Napi::Float32Array>(info, 1, napi_float32_array, size_t((past + t) * kvh * hd), "k").Data(); a.ldk = kvh * hd;
  a.v = arg<Napi::Float32Array>(info, 2, napi_float32_array, size_t((past + t) * kvh * hd), "v").Data(); a.ldv = kvh * hd;
  auto out = f32_out(env, size_t(t * heads * hd));
  a.out = out.Data(); a.ldo = heads * hd;
  a.t_len = t; a.past = past; a.heads = heads; a.kv_heads = kvh; a.head_dim = hd;
  a.scale = float(1.0 / std::sqrt(double(hd)));
  cpu::attention(a);
  return out;
}

// routerTopk(logits [T,E], T, E, k) -> { idx: Int32Array, weight: Float32Array }
Napi::Value RouterTopk(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t t = num(info, 1, "T"), e = num(info, 2, "E", 1), k = num(info, 3, "k", 1);
  if (k > e) throw make_error(env, "invalid_argument", "k exceeds the expert count");
  auto lg = arg<Napi::Float32Array>(info, 0, napi_float32_array, size_t(t * e), "logits");
  auto idx = Napi::Int32Array::New(env, size_t(t * k));
  auto w = f32_out(env, size_t(t * k));
  cpu::router_topk(lg.Data(), t, e, k, idx.Data(), w.Data());
  Napi::Object o = Napi::Object::New(env);
  o.Set("idx", idx);
  o.Set("weight", w);
  return o;
}

// gumbelNoise(bits: Uint32Array) -> Float32Array: the CUDA sampler's noise for each 32-bit draw.
Napi::Value GumbelNoise(const Napi::CallbackInfo& info) {
  auto bits = arg<Napi::Uint32Array>(info, 0, napi_uint32_array, 0, "bits");
  auto out = f32_out(info.Env(), bits.ElementLength());
  for (size_t i = 0; i < bits.ElementLength(); ++i) out[i] = rules::gumbel_noise(bits[i]);
  return out;
}

// The CUDA sampler's row operations as plain loops, for drawing with cuts on the host.
class HostRow {
 public:
  HostRow(const float* x, int64_t n) : x_(x), n_(n) {}
  float max_logit() const {
    float m = -INFINITY;
    for (int64_t i = 0; i < n_; ++i) m = std::max(m, x_[i]);
    return m;
  }
  float logit(int32_t i) const { return x_[i]; }
  template <class A, class B>
  void sums(A allowed, B before, float inv_t, float top, rules::CutSums& out) const {
    out = rules::CutSums{};
    for (int64_t i = 0; i < n_; ++i) {
      const float w = std::exp((x_[i] - top) * inv_t);
      if (allowed(int32_t(i), x_[i])) out.allowed_mass += w;
      if (before(int32_t(i), x_[i])) { out.before_mass += w; out.before_count++; }
    }
  }
  template <class A>
  int32_t draw(A allowed, float inv_t, float top, float u) const {
    float run = 0.f;
    int32_t best = 0;
    for (int64_t i = 0; i < n_; ++i) {
      if (x_[i] > x_[best]) best = int32_t(i);
      if (!allowed(int32_t(i), x_[i])) continue;
      run += std::exp((x_[i] - top) * inv_t);
      if (u < run) return int32_t(i);
    }
    return best;
  }
  uint32_t count_at_least(uint32_t key) const {
    uint32_t c = 0;
    for (int64_t i = 0; i < n_; ++i) c += rules::ordered_key(x_[i]) >= key;
    return c;
  }

 private:
  const float* x_;
  int64_t n_;
};

// sampleWithCuts(logits, temperature, topK, topP, minP, seed, step) -> token id: the CUDA
// sampler's top-k / top-p / min-p draw, run on the host.
Napi::Value SampleWithCuts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = arg<Napi::Float32Array>(info, 0, napi_float32_array, 1, "logits");
  auto f = [&](size_t i, const char* name) {
    if (i >= info.Length() || !info[i].IsNumber()) throw make_error(env, "invalid_argument", std::string(name) + " must be a number");
    return info[i].As<Napi::Number>().DoubleValue();
  };
  const double t = f(1, "temperature"), k = f(2, "topK"), p = f(3, "topP"), mp = f(4, "minP");
  if (!(t > 0) || !(k >= 0) || !(p > 0 && p <= 1) || !(mp >= 0 && mp <= 1))
    throw make_error(env, "invalid_argument", "sampleWithCuts: temperature > 0, topK ≥ 0, topP in (0, 1], minP in [0, 1]");
  HostRow row(x.Data(), int64_t(x.ElementLength()));
  const rules::Cuts cuts{float(t), int(k), float(p), float(mp), uint64_t(f(5, "seed")), uint64_t(f(6, "step"))};
  return Napi::Number::New(env, rules::draw_with_cuts(row, int64_t(x.ElementLength()), cuts));
}

// decodeSplitRanges(keys) -> Int32Array [begin, end] × kMaxDecodeSplits: how CUDA decode
// attention cuts a sequence of `keys` keys (empty ranges past its split count).
Napi::Value DecodeSplitRanges(const Napi::CallbackInfo& info) {
  const int64_t keys = num(info, 0, "keys", 1);
  auto out = Napi::Int32Array::New(info.Env(), 2 * size_t(rules::kMaxDecodeSplits));
  for (int i = 0; i < rules::kMaxDecodeSplits; ++i) {
    int64_t b, e;
    rules::decode_split_range(keys, i, b, e);
    out[2 * size_t(i)] = int32_t(b);
    out[2 * size_t(i) + 1] = int32_t(e);
  }
  return out;
}

// fmaPeak(seconds) -> GFLOP/s; readBandwidth(seconds) -> GB/s (bench/ only)
Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cpu::measure_fma_peak(info[0].As<Napi::Number>().DoubleValue()));
}
Napi::Value ReadBandwidth(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cpu::measure_read_bandwidth(info[0].As<Napi::Number>().DoubleValue()));
}

// parseSafetensorsHeader(bytes: Uint8Array holding a whole file) -> tensor names (or throws):
// the native parser the loader uses, for the fuzz regression tests.
Napi::Value ParseSafetensorsHeader(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw make_error(env, "invalid_argument", "bytes must be a Uint8Array");
  auto b = info[0].As<Napi::Uint8Array>();
  ParsedHeader h = parse_safetensors_header(b.Data(), b.ElementLength(), b.ElementLength());
  Napi::Array names = Napi::Array::New(env, h.tensors.size());
  for (size_t i = 0; i < h.tensors.size(); ++i) names.Set(uint32_t(i), Napi::String::New(env, h.tensors[i].name));
  return names;
}

Napi::Value Threads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), ThreadPool::instance().size());
}

template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Error& e) {
    throw make_error(info.Env(), e.kind, e.what());
  }
}

}  // namespace

Napi::Object ops_exports(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("gemm", Napi::Function::New<guarded<Gemm>>(env, "gemm"));
  o.Set("quantizeInt8", Napi::Function::New<guarded<QuantizeInt8>>(env, "quantizeInt8"));
  o.Set("rmsnorm", Napi::Function::New<guarded<RmsNorm>>(env, "rmsnorm"));
  o.Set("conv1d", Napi::Function::New<guarded<Conv1d>>(env, "conv1d"));
  o.Set("selectiveScan", Napi::Function::New<guarded<SelectiveScan>>(env, "selectiveScan"));
  o.Set("attention", Napi::Function::New<guarded<Attention>>(env, "attention"));
  o.Set("routerTopk", Napi::Function::New<guarded<RouterTopk>>(env, "routerTopk"));
  o.Set("gumbelNoise", Napi::Function::New<guarded<GumbelNoise>>(env, "gumbelNoise"));
  o.Set("sampleWithCuts", Napi::Function::New<guarded<SampleWithCuts>>(env, "sampleWithCuts"));
  o.Set("decodeSplitRanges", Napi::Function::New<guarded<DecodeSplitRanges>>(env, "decodeSplitRanges"));
  o.Set("threads", Napi::Function::New<guarded<Threads>>(env, "threads"));
  o.Set("parseSafetensorsHeader", Napi::Function::New<guarded<ParseSafetensorsHeader>>(env, "parseSafetensorsHeader"));
  o.Set("gemmRate", Napi::Function::New<guarded<GemmRate>>(env, "gemmRate"));
  o.Set("fmaPeak", Napi::Function::New<guarded<FmaPeak>>(env, "fmaPeak"));
  o.Set("readBandwidth", Napi::Function::New<guarded<ReadBandwidth>>(env, "readBandwidth"));
  return o;
}

}  // namespace jamba::napi
