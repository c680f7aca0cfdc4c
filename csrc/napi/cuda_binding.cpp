#include "cuda_binding.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../core/dtype.h"
#include "../cuda/check.h"
#include "../cuda/kernels.h"
#include "js_convert.h"

namespace jamba::napi {
namespace {

using cuda::DType;

using cuda::check;

// A device buffer that frees itself.
struct Dev {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Dev(size_t n) : bytes(n) { check(cudaMalloc(&p, n ? n : 1), "cudaMalloc"); }
  Dev(const void* host, size_t n) : Dev(n) { check(cudaMemcpy(p, host, n, cudaMemcpyHostToDevice), "cudaMemcpy to device"); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  template <typename T> T* as() const { return static_cast<T*>(p); }
  template <typename T> std::vector<T> get(size_t n) const {
    std::vector<T> out(n);
    check(cudaMemcpy(out.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy to host");
    return out;
  }
};

// Reading the options object: every field is named in its error.
struct Opts {
  Napi::Env env;
  Napi::Object o;
  Napi::Value get(const char* k) const {
    if (!o.Has(k)) throw make_error(env, "invalid_argument", std::string("missing field ") + k);
    return o.Get(k);
  }
  bool has(const char* k) const { return o.Has(k) && !o.Get(k).IsUndefined() && !o.Get(k).IsNull(); }
  int64_t i(const char* k) const {
    Napi::Value v = get(k);
    if (!v.IsNumber()) throw make_error(env, "invalid_argument", std::string(k) + " must be a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d != std::floor(d) || d > double(int64_t(1) << 40)) throw make_error(env, "invalid_argument", std::string(k) + " must be a non-negative integer");
    return int64_t(d);
  }
  double f(const char* k, double dflt) const { return has(k) ? get(k).As<Napi::Number>().DoubleValue() : dflt; }
  std::vector<float> f32(const char* k, size_t need) const {
    Napi::Value v = get(k);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw make_error(env, "invalid_argument", std::string(k) + " must be a Float32Array");
    auto a = v.As<Napi::Float32Array>();
    if (a.ElementLength() != need)
      throw make_error(env, "invalid_argument", std::string(k) + " has " + std::to_string(a.ElementLength()) + " values, needs " + std::to_string(need));
    return std::vector<float>(a.Data(), a.Data() + need);
  }
  std::vector<int32_t> i32(const char* k, size_t need) const {
    Napi::Value v = get(k);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw make_error(env, "invalid_argument", std::string(k) + " must be an Int32Array");
    auto a = v.As<Napi::Int32Array>();
    if (a.ElementLength() != need)
      throw make_error(env, "invalid_argument", std::string(k) + " has " + std::to_string(a.ElementLength()) + " values, needs " + std::to_string(need));
    return std::vector<int32_t>(a.Data(), a.Data() + need);
  }
  DType dtype() const {
    if (!has("dtype")) return DType::F32;
    const std::string s = get("dtype").ToString().Utf8Value();
    if (s == "f32") return DType::F32;
    if (s == "bf16") return DType::BF16;
    throw make_error(env, "invalid_argument", "dtype must be 'f32' or 'bf16'");
  }
  int repeat() const { return has("repeat") ? int(i("repeat")) : 1; }
};

// Host float32 values in the storage type, on the device.
std::unique_ptr<Dev> upload(const std::vector<float>& v, DType t) {
  if (t == DType::F32) return std::make_unique<Dev>(v.data(), v.size() * 4);
  const std::vector<uint16_t> b = to_bf16_bits(v);
  return std::make_unique<Dev>(b.data(), b.size() * 2);
}

std::vector<float> download(const Dev& d, size_t n, DType t) {
  if (t == DType::F32) return d.get<float>(n);
  std::vector<uint16_t> b = d.get<uint16_t>(n);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(b[i]);
  return out;
}

// Unwritten output elements must show: outputs start as NaN.
void poison(Dev& d) { check(cudaMemset(d.p, 0xff, d.bytes), "cudaMemset"); }

Napi::Float32Array js(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * 4);
  return a;
}
Napi::Int32Array js(Napi::Env env, const std::vector<int32_t>& v) {
  auto a = Napi::Int32Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * 4);
  return a;
}

// Runs `op` once, then `repeat` more times between CUDA events; returns ms per run (0 if 1).
double timed(int repeat, const std::function<void()>& op) {
  op();
  check(cudaDeviceSynchronize(), "kernel");
  if (repeat <= 1) return 0;
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  check(cudaEventRecord(a), "cudaEventRecord");
  for (int r = 0; r < repeat; ++r) op();
  check(cudaEventRecord(b), "cudaEventRecord");
  check(cudaEventSynchronize(b), "kernel");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / repeat;
}

// The result object of an op: its named outputs and the time per run.
Napi::Object result(const Opts& o, double ms, std::initializer_list<std::pair<const char*, Napi::Value>> fields) {
  Napi::Object r = Napi::Object::New(o.env);
  for (const auto& [k, v] : fields) r.Set(k, v);
  r.Set("ms", ms);
  return r;
}

// Wraps an op: options object in, result object out, native failures as typed JS errors.
template <typename F>
Napi::Function op(Napi::Env env, const char* name, F body) {
  return Napi::Function::New(env, [body, name](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw make_error(env, "invalid_argument", std::string(name) + "(options) takes an object");
    try {
      return body(Opts{env, info[0].As<Napi::Object>()});
    } catch (const Error& e) {
      throw make_error(env, e.kind, std::string(name) + ": " + e.what());
    }
  }, name);
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    int n = 0;
    check(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
    if (n == 0) fail("no_device", "no CUDA device is present");
    cudaDeviceProp p{};
    check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", p.name);
    o.Set("computeCapability", std::to_string(p.major) + "." + std::to_string(p.minor));
    o.Set("multiprocessors", p.multiProcessorCount);
    o.Set("l2Bytes", p.l2CacheSize);
    o.Set("totalBytes", double(total_b));
    o.Set("freeBytes", double(free_b));
    return o;
  } catch (const Error& e) {
    throw make_error(env, e.kind, e.what());
  }
}

// The shapes the kernels support (kernels.h); needs no device.
Napi::Value Limits(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("maxDState", cuda::limits::kMaxDState);
  o.Set("minConv", cuda::limits::kMinConv);
  o.Set("maxConv", cuda::limits::kMaxConv);
  o.Set("maxHeadDim", cuda::limits::kMaxHeadDim);
  o.Set("maxGroup", cuda::limits::kMaxGroup);
  o.Set("maxExperts", cuda::limits::kMaxExperts);
  return o;
}

}  // namespace

Napi::Object CudaOps(Napi::Env env) {
  Napi::Object ops = Napi::Object::New(env);
  ops.Set("info", Napi::Function::New(env, Info, "info"));
  ops.Set("limits", Napi::Function::New(env, Limits, "limits"));

  // copyBandwidth({ bytes, repeat }): device-to-device copy, GB/s counted as read + write.
  ops.Set("copyBandwidth", op(env, "copyBandwidth", [](const Opts& o) -> Napi::Value {
    const size_t n = size_t(o.i("bytes"));
    Dev a(n), b(n);
    check(cudaMemset(a.p, 1, n), "cudaMemset");
    const double ms = timed(std::max(2, o.repeat()), [&] { check(cudaMemcpyAsync(b.p, a.p, n, cudaMemcpyDeviceToDevice), "copy"); });
    return Napi::Number::New(o.env, 2.0 * double(n) / (ms * 1e6));
  }));

  // rmsnormResidual({ h, delta?, rows, cols, weight, eps, dtype }) → { h, out, ms }
  ops.Set("rmsnormResidual", op(env, "rmsnormResidual", [](const Opts& o) -> Napi::Value {
    const int64_t rows = o.i("rows"), cols = o.i("cols");
    const DType t = o.dtype();
    Dev h(o.f32("h", size_t(rows * cols)).data(), size_t(rows * cols) * 4);
    auto delta = o.has("delta") ? upload(o.f32("delta", size_t(rows * cols)), t) : nullptr;
    Dev w(o.f32("weight", size_t(cols)).data(), size_t(cols) * 4);
    Dev out(size_t(rows * cols) * (t == DType::BF16 ? 2 : 4));
    poison(out);
    const double ms = timed(o.repeat(), [&] {
      cuda::rmsnorm_residual(h.as<float>(), cols, delta ? delta->p : nullptr, cols, t, rows, cols, w.as<float>(), float(o.f("eps", 1e-6)), out.p,
                             cols, t, nullptr);
    });
    return result(o, ms, {{"h", js(o.env, h.get<float>(size_t(rows * cols)))},
                          {"out", js(o.env, download(out, size_t(rows * cols), t))}});
  }));

  // conv1d({ x, tLen, channels, w, dConv, bias?, state, dtype }) → { out, state, ms }
  ops.Set("conv1d", op(env, "conv1d", [](const Opts& o) -> Napi::Value {
    const int64_t T = o.i("tLen"), C = o.i("channels"), K = o.i("dConv");
    const DType t = o.dtype();
    auto x = upload(o.f32("x", size_t(T * C)), t);
    Dev w(o.f32("w", size_t(C * K)).data(), size_t(C * K) * 4);
    std::unique_ptr<Dev> b;
    if (o.has("bias")) b = std::make_unique<Dev>(o.f32("bias", size_t(C)).data(), size_t(C) * 4);
    const std::vector<float> st0 = o.f32("state", size_t(C * (K - 1)));
    Dev st(st0.data(), st0.size() * 4);
    Dev out(size_t(T * C) * (t == DType::BF16 ? 2 : 4));
    poison(out);
    const double ms = timed(o.repeat(), [&] {
      cuda::causal_conv1d_silu(x->p, C, t, T, C, w.as<float>(), int(K), b ? b->as<float>() : nullptr, st.as<float>(), out.p, C, t, nullptr);
    });
    return result(o, ms, {{"out", js(o.env, download(out, size_t(T * C), t))},
                          {"state", js(o.env, st.get<float>(st0.size()))}});
  }));

  // conv1dUpdate({ x, batch, channels, w, dConv, bias?, pool, slots, dtype }) → { out, pool }
  ops.Set("conv1dUpdate", op(env, "conv1dUpdate", [](const Opts& o) -> Napi::Value {
    const int64_t B = o.i("batch"), C = o.i("channels"), K = o.i("dConv"), P = o.i("poolSlots");
    const DType t = o.dtype();
    auto x = upload(o.f32("x", size_t(B * C)), t);
    Dev w(o.f32("w", size_t(C * K)).data(), size_t(C * K) * 4);
    std::unique_ptr<Dev> b;
    if (o.has("bias")) b = std::make_unique<Dev>(o.f32("bias", size_t(C)).data(), size_t(C) * 4);
    const std::vector<float> pool0 = o.f32("pool", size_t(P * C * (K - 1)));
    Dev pool(pool0.data(), pool0.size() * 4);
    Dev slots(o.i32("slots", size_t(B)).data(), size_t(B) * 4);
    Dev out(size_t(B * C) * (t == DType::BF16 ? 2 : 4));
    poison(out);
    const double ms = timed(o.repeat(), [&] {
      cuda::causal_conv1d_update_silu(x->p, C, t, B, C, w.as<float>(), int(K), b ? b->as<float>() : nullptr, pool.as<float>(),
                                      slots.as<int32_t>(), out.p, C, t, nullptr);
    });
    return result(o, ms, {{"out", js(o.env, download(out, size_t(B * C), t))},
                          {"pool", js(o.env, pool.get<float>(pool0.size()))}});
  }));

  // selectiveScan({ u, dt, b, c, z, a, d, dtBias, state, tLen, dInner, dState, dtype }): prefill of one sequence
  // (decode steps: mambaDecodeStep)
  ops.Set("selectiveScan", op(env, "selectiveScan", [](const Opts& o) -> Napi::Value {
    const int64_t Di = o.i("dInner"), N = o.i("dState"), T = o.i("tLen");
    const DType t = o.dtype();
    auto u = upload(o.f32("u", size_t(T * Di)), t), dt = upload(o.f32("dt", size_t(T * Di)), t);
    auto bm = upload(o.f32("b", size_t(T * N)), t), cm = upload(o.f32("c", size_t(T * N)), t), z = upload(o.f32("z", size_t(T * Di)), t);
    Dev a(o.f32("a", size_t(Di * N)).data(), size_t(Di * N) * 4), d(o.f32("d", size_t(Di)).data(), size_t(Di) * 4),
        bias(o.f32("dtBias", size_t(Di)).data(), size_t(Di) * 4);
    const std::vector<float> st0 = o.f32("state", size_t(Di * N));
    Dev st(st0.data(), st0.size() * 4);
    Dev y(size_t(T * Di) * (t == DType::BF16 ? 2 : 4));
    poison(y);
    cuda::ScanArgs s{};
    s.u = u->p; s.ldu = Di; s.dt = dt->p; s.lddt = Di; s.b = bm->p; s.ldb = N; s.c = cm->p; s.ldc = N; s.z = z->p; s.ldz = Di;
    s.in_type = t; s.a = a.as<float>(); s.d_skip = d.as<float>(); s.dt_bias = bias.as<float>();
    s.y = y.p; s.ldy = Di; s.out_type = t; s.t_len = T; s.d_inner = Di; s.d_state = N;
    const double ms = timed(o.repeat(), [&] { cuda::selective_scan(s, st.as<float>(), nullptr); });
    return result(o, ms, {{"y", js(o.env, download(y, size_t(T * Di), t))},
                          {"state", js(o.env, st.get<float>(st0.size()))}});
  }));

  // mambaDecodeStep({ p, batch, dInner, dState, dtRank, dtNorm, bNorm, cNorm, eps, dtProj, dtBias, a, d, u, z, pool,
  //                   poolSlots, slots, dtype }) → { y, pool, ms }: Mamba's fused decode step after x_proj
  ops.Set("mambaDecodeStep", op(env, "mambaDecodeStep", [](const Opts& o) -> Napi::Value {
    const int64_t B = o.i("batch"), Di = o.i("dInner"), N = o.i("dState"), R = o.i("dtRank"), P = o.i("poolSlots");
    const DType t = o.dtype();
    const auto vec = [&](const char* k, int64_t n) { return std::make_unique<Dev>(o.f32(k, size_t(n)).data(), size_t(n) * 4); };
    auto p = vec("p", B * (R + 2 * N)), dtn = vec("dtNorm", R), bn = vec("bNorm", N), cn = vec("cNorm", N);
    auto bias = vec("dtBias", Di), a = vec("a", Di * N), d = vec("d", Di);
    auto w = upload(o.f32("dtProj", size_t(Di * R)), t), u = upload(o.f32("u", size_t(B * Di)), t), z = upload(o.f32("z", size_t(B * Di)), t);
    const std::vector<float> pool0 = o.f32("pool", size_t(P * Di * N));
    Dev pool(pool0.data(), pool0.size() * 4);
    Dev slots(o.i32("slots", size_t(B)).data(), size_t(B) * 4);
    Dev y(size_t(B * Di) * (t == DType::BF16 ? 2 : 4));
    poison(y);
    cuda::MambaDecodeArgs m{};
    m.p = p->as<float>(); m.ldp = R + 2 * N;
    m.dt_norm = dtn->as<float>(); m.b_norm = bn->as<float>(); m.c_norm = cn->as<float>(); m.eps = float(o.f("eps", 1e-6));
    m.dt_proj = w->p; m.dt_bias = bias->as<float>(); m.a = a->as<float>(); m.d_skip = d->as<float>();
    m.u = u->p; m.ldu = Di; m.z = z->p; m.ldz = Di; m.y = y.p; m.ldy = Di; m.type = t;
    m.d_inner = Di; m.d_state = N; m.dt_rank = R;
    const double ms = timed(o.repeat(), [&] { cuda::mamba_decode_step(m, pool.as<float>(), slots.as<int32_t>(), B, nullptr); });
    return result(o, ms, {{"y", js(o.env, download(y, size_t(B * Di), t))}, {"pool", js(o.env, pool.get<float>(pool0.size()))}});
  }));

  // moeRoute({ logits, tokens, experts, k }) → { idx, weight, counts, offsets, active, rowOf, tokenOfRow, ms }
  ops.Set("moeRoute", op(env, "moeRoute", [](const Opts& o) -> Napi::Value {
    const int64_t T = o.i("tokens"), E = o.i("experts"), K = o.i("k");
    Dev lg(o.f32("logits", size_t(T * E)).data(), size_t(T * E) * 4);
    Dev idx(size_t(T * K) * 4), w(size_t(T * K) * 4), counts(size_t(E) * 4), offsets(size_t(E + 1) * 4), active(size_t(E) * 4),
        row_of(size_t(T * K) * 4), tor(size_t(T * K) * 4), rw(size_t(T * K) * 4);
    const double ms = timed(o.repeat(), [&] {
      cuda::moe_route(lg.as<float>(), T, int(E), int(K), idx.as<int32_t>(), w.as<float>(), counts.as<int32_t>(), offsets.as<int32_t>(),
                      active.as<int32_t>(), row_of.as<int32_t>(), tor.as<int32_t>(), rw.as<float>(), nullptr);
    });
    return result(o, ms, {{"idx", js(o.env, idx.get<int32_t>(size_t(T * K)))},
                          {"weight", js(o.env, w.get<float>(size_t(T * K)))},
                          {"counts", js(o.env, counts.get<int32_t>(size_t(E)))},
                          {"offsets", js(o.env, offsets.get<int32_t>(size_t(E + 1)))},
                          {"active", js(o.env, active.get<int32_t>(size_t(E)))},
                          {"rowOf", js(o.env, row_of.get<int32_t>(size_t(T * K)))},
                          {"tokenOfRow", js(o.env, tor.get<int32_t>(size_t(T * K)))},
                          {"rowWeight", js(o.env, rw.get<float>(size_t(T * K)))}});
  }));

  // groupedGemm({ a, rows, k, w, experts, n, int8, offsets, rowScale?, outDtype, skinny?, siluGate?, dx? }) → { out, ms }:
  // a and w are rounded to bf16 here; with int8, w is quantized on the device first. `skinny`
  // runs the weight-streaming kernel (its active-expert list made here from the offsets), with
  // `siluGate` its fused gate (out is then [rows, n / 2]). `dx` runs the input gradient instead:
  // a is then dY [rows, n] and out = dY · W_e, float32 [rows, k].
  ops.Set("groupedGemm", op(env, "groupedGemm", [](const Opts& o) -> Napi::Value {
    const int64_t M = o.i("rows"), K = o.i("k"), E = o.i("experts"), N = o.i("n");
    const bool int8 = o.has("int8") && o.get("int8").ToBoolean(), dx = o.has("dx") && o.get("dx").ToBoolean();
    const DType ot = !dx && o.has("outDtype") && o.get("outDtype").ToString().Utf8Value() == "bf16" ? DType::BF16 : DType::F32;
    auto a = upload(o.f32("a", size_t(M * (dx ? N : K))), DType::BF16);
    auto wb = upload(o.f32("w", size_t(E * N * K)), DType::BF16);
    std::unique_ptr<Dev> q, scale;
    if (int8) {
      q = std::make_unique<Dev>(size_t(E * N * K));
      scale = std::make_unique<Dev>(size_t(E * N) * 4);
      cuda::quantize_int8_rows(wb->p, E * N, K, q->as<int8_t>(), scale->as<float>(), nullptr);
    }
    Dev offsets(o.i32("offsets", size_t(E + 1)).data(), size_t(E + 1) * 4);
    std::unique_ptr<Dev> rs;
    if (o.has("rowScale")) rs = std::make_unique<Dev>(o.f32("rowScale", size_t(M)).data(), size_t(M) * 4);
    const bool skinny = o.has("skinny") && o.get("skinny").ToBoolean(), gate = skinny && o.has("siluGate") && o.get("siluGate").ToBoolean();
    const int64_t NO = dx ? K : gate ? N / 2 : N;
    Dev out(size_t(M * NO) * (ot == DType::BF16 ? 2 : 4));
    poison(out);
    cuda::GroupedWeights gw{int8 ? q->p : wb->p, int8 ? scale->as<float>() : nullptr, int8, N, K};
    std::vector<int32_t> off = o.i32("offsets", size_t(E + 1)), act;
    int64_t most = 0;
    for (int64_t e = 0; e < E; ++e) {
      if (off[size_t(e + 1)] > off[size_t(e)]) act.push_back(int32_t(e));
      most = std::max<int64_t>(most, off[size_t(e + 1)] - off[size_t(e)]);
    }
    act.resize(size_t(E), -1);
    Dev active(act.data(), act.size() * 4);
    const double ms = timed(o.repeat(), [&] {
      if (dx)
        cuda::grouped_gemm_dx(a->p, N, gw, offsets.as<int32_t>(), int(E), M, rs ? rs->as<float>() : nullptr, out.as<float>(), K, false, nullptr);
      else if (skinny)
        cuda::skinny_gemm(a->p, K, gw, offsets.as<int32_t>(), active.as<int32_t>(), int(E), M, most, rs ? rs->as<float>() : nullptr, gate,
                          out.p, NO, ot, nullptr);
      else
        cuda::grouped_gemm(a->p, K, gw, offsets.as<int32_t>(), int(E), M, rs ? rs->as<float>() : nullptr, out.p, N, ot, nullptr);
    });
    return result(o, ms, {{"out", js(o.env, download(out, size_t(M * NO), ot))}});
  }));

  // moeBlock({ x, tokens, hidden, logits, experts, k, inner, wGateUp, wDown, int8, h? }) → { h, ms }:
  // the whole MoE feed-forward on the device as the executor chains it — routing, gather, the
  // gate|up expert GEMM, the SiLU gate, the down expert GEMM with the routing weight fused, and
  // the per-token combine added to the residual stream h (zeros when not given). x and the
  // weights are rounded to bf16 here; with int8 the experts are quantized on the device first.
  ops.Set("moeBlock", op(env, "moeBlock", [](const Opts& o) -> Napi::Value {
    const int64_t T = o.i("tokens"), H = o.i("hidden"), E = o.i("experts"), K = o.i("k"), I = o.i("inner"), R = T * K;
    const bool int8 = o.has("int8") && o.get("int8").ToBoolean();
    auto x = upload(o.f32("x", size_t(T * H)), DType::BF16);
    Dev lg(o.f32("logits", size_t(T * E)).data(), size_t(T * E) * 4);
    auto wgu = upload(o.f32("wGateUp", size_t(E * 2 * I * H)), DType::BF16), wd = upload(o.f32("wDown", size_t(E * H * I)), DType::BF16);
    std::unique_ptr<Dev> qgu, sgu, qd, sd;
    if (int8) {
      qgu = std::make_unique<Dev>(size_t(E * 2 * I * H));
      sgu = std::make_unique<Dev>(size_t(E * 2 * I) * 4);
      qd = std::make_unique<Dev>(size_t(E * H * I));
      sd = std::make_unique<Dev>(size_t(E * H) * 4);
      cuda::quantize_int8_rows(wgu->p, E * 2 * I, H, qgu->as<int8_t>(), sgu->as<float>(), nullptr);
      cuda::quantize_int8_rows(wd->p, E * H, I, qd->as<int8_t>(), sd->as<float>(), nullptr);
    }
    const cuda::GroupedWeights gu{int8 ? qgu->p : wgu->p, int8 ? sgu->as<float>() : nullptr, int8, 2 * I, H};
    const cuda::GroupedWeights dn{int8 ? qd->p : wd->p, int8 ? sd->as<float>() : nullptr, int8, H, I};
    const std::vector<float> h0 = o.has("h") ? o.f32("h", size_t(T * H)) : std::vector<float>(size_t(T * H), 0.f);
    Dev h(h0.data(), h0.size() * 4);
    Dev idx(size_t(R) * 4), w(size_t(R) * 4), counts(size_t(E) * 4), offsets(size_t(E + 1) * 4), active(size_t(E) * 4), row_of(size_t(R) * 4),
        tor(size_t(R) * 4), rw(size_t(R) * 4), xg(size_t(R * H) * 2), gub(size_t(R * 2 * I) * 2), act(size_t(R * I) * 2), y(size_t(R * H) * 2);
    poison(y);
    const bool skinny = o.has("skinny") && o.get("skinny").ToBoolean();
    const double ms = timed(o.repeat(), [&] {
      cuda::moe_route(lg.as<float>(), T, int(E), int(K), idx.as<int32_t>(), w.as<float>(), counts.as<int32_t>(), offsets.as<int32_t>(),
                      active.as<int32_t>(), row_of.as<int32_t>(), tor.as<int32_t>(), rw.as<float>(), nullptr);
      cuda::gather_rows(x->p, H, DType::BF16, tor.as<int32_t>(), R, H, xg.p, H, nullptr);
      if (skinny) {  // as the executor's decode pass: an expert has at most one row per token
        cuda::skinny_gemm(xg.p, H, gu, offsets.as<int32_t>(), active.as<int32_t>(), int(E), R, T, nullptr, true, act.p, I, DType::BF16, nullptr);
        cuda::skinny_gemm(act.p, I, dn, offsets.as<int32_t>(), active.as<int32_t>(), int(E), R, T, rw.as<float>(), false, y.p, H, DType::BF16, nullptr);
      } else {
        cuda::grouped_gemm(xg.p, H, gu, offsets.as<int32_t>(), int(E), R, nullptr, gub.p, 2 * I, DType::BF16, nullptr);
        cuda::silu_gate(gub.p, 2 * I, DType::BF16, R, I, act.p, I, nullptr);
        cuda::grouped_gemm(act.p, I, dn, offsets.as<int32_t>(), int(E), R, rw.as<float>(), y.p, H, DType::BF16, nullptr);
      }
      cuda::moe_combine(y.p, DType::BF16, H, row_of.as<int32_t>(), T, int(K), h.as<float>(), true, nullptr);
    });
    return result(o, ms, {{"h", js(o.env, h.get<float>(size_t(T * H)))}});
  }));

  // embed({ table, vocab, hidden, ids, dtype }) → { out }: embedding rows into the float32 stream.
  ops.Set("embed", op(env, "embed", [](const Opts& o) -> Napi::Value {
    const int64_t V = o.i("vocab"), H = o.i("hidden");
    const DType t = o.dtype();
    const std::vector<int32_t> ids = o.i32("ids", size_t(o.i("count")));
    for (int32_t id : ids)
      if (id < 0 || id >= V) fail("invalid_argument", "token id " + std::to_string(id) + " is outside the table");
    auto table = upload(o.f32("table", size_t(V * H)), t);
    Dev dids(ids.data(), ids.size() * 4), out(ids.size() * size_t(H) * 4);
    poison(out);
    const double ms = timed(o.repeat(), [&] { cuda::embed_rows(table->p, t, H, dids.as<int32_t>(), int64_t(ids.size()), out.as<float>(), nullptr); });
    return result(o, ms, {{"out", js(o.env, out.get<float>(ids.size() * size_t(H)))}});
  }));

  // appendKv({ qkv, rows, width, kCol, vCol, kvWidth, positions, slots, past, tokenOffsets, dtype }) → { k, v }:
  // rows of a merged q|k|v output appended to a pool of `slots` caches of `positions` rows each.
  ops.Set("appendKv", op(env, "appendKv", [](const Opts& o) -> Napi::Value {
    const int64_t rows = o.i("rows"), width = o.i("width"), kc = o.i("kCol"), vc = o.i("vCol"), kvw = o.i("kvWidth"), P = o.i("positions"),
                  S = o.i("slots");
    const DType t = o.dtype();
    auto qkv = upload(o.f32("qkv", size_t(rows * width)), t);
    const std::vector<int32_t> past = o.i32("past", size_t(S)), offs = o.i32("tokenOffsets", size_t(S + 1));
    int64_t longest = 0;
    for (int64_t s = 0; s < S; ++s) longest = std::max<int64_t>(longest, offs[size_t(s + 1)] - offs[size_t(s)]);
    std::vector<int32_t> slot(static_cast<size_t>(S));
    for (int64_t s = 0; s < S; ++s) slot[size_t(s)] = int32_t(s);
    Dev dslot(slot.data(), slot.size() * 4), dpast(past.data(), past.size() * 4), doffs(offs.data(), offs.size() * 4);
    Dev kp(size_t(S * P * kvw) * 2), vp(size_t(S * P * kvw) * 2);
    check(cudaMemset(kp.p, 0, kp.bytes), "cudaMemset");
    check(cudaMemset(vp.p, 0, vp.bytes), "cudaMemset");
    const double ms = timed(o.repeat(), [&] {
      cuda::append_kv(qkv->p, width, t, kc, vc, longest, int(kvw), kp.p, vp.p, P * kvw, dslot.as<int32_t>(), dpast.as<int32_t>(), S,
                      doffs.as<int32_t>(), nullptr);
    });
    return result(o, ms, {{"k", js(o.env, download(kp, size_t(S * P * kvw), DType::BF16))}, {"v", js(o.env, download(vp, size_t(S * P * kvw), DType::BF16))}});
  }));

  // quantizeInt8({ w, rows, k }) → { q: Int32Array of the int8 values, scale }
  ops.Set("quantizeInt8", op(env, "quantizeInt8", [](const Opts& o) -> Napi::Value {
    const int64_t R = o.i("rows"), K = o.i("k");
    auto w = upload(o.f32("w", size_t(R * K)), DType::BF16);
    Dev q(size_t(R * K)), s(size_t(R) * 4);
    cuda::quantize_int8_rows(w->p, R, K, q.as<int8_t>(), s.as<float>(), nullptr);
    check(cudaDeviceSynchronize(), "quantize");
    std::vector<int8_t> qv = q.get<int8_t>(size_t(R * K));
    Napi::Object r = Napi::Object::New(o.env);
    r.Set("q", js(o.env, std::vector<int32_t>(qv.begin(), qv.end())));
    r.Set("scale", js(o.env, s.get<float>(size_t(R))));
    return r;
  }));

  // attention({ q, tokens, k, v, positions, heads, kvHeads, headDim, past, decode, dtype })
  // k and v: one sequence's cache [positions, kvHeads, headDim] (already holding the new keys).
  // decode: `tokens` sequences share that cache layout by slot (sequence s uses slot s of a
  // pool of `tokens` copies) with lengths past[s] + 1; prefill: one sequence of `tokens` queries.
  ops.Set("attention", op(env, "attention", [](const Opts& o) -> Napi::Value {
    const int64_t T = o.i("tokens"), P = o.i("positions"), H = o.i("heads"), KV = o.i("kvHeads"), D = o.i("headDim");
    const bool decode = o.has("decode") && o.get("decode").ToBoolean();
    const DType t = o.dtype();
    const int64_t slots = decode ? T : 1, stride = P * KV * D;
    auto q = upload(o.f32("q", size_t(T * H * D)), t);
    std::vector<float> k = o.f32("k", size_t(slots * stride)), v = o.f32("v", size_t(slots * stride));
    auto kp = upload(k, DType::BF16), vp = upload(v, DType::BF16);
    std::vector<int32_t> slot(static_cast<size_t>(slots));
    for (int64_t s = 0; s < slots; ++s) slot[size_t(s)] = int32_t(s);
    Dev dslot(slot.data(), slot.size() * 4), past(o.i32("past", size_t(slots)).data(), size_t(slots) * 4);
    Dev out(size_t(T * H * D) * (t == DType::BF16 ? 2 : 4));
    poison(out);
    cuda::AttentionArgs a{};
    a.q = q->p; a.ldq = H * D; a.q_type = t; a.k_pool = kp->p; a.v_pool = vp->p; a.kv_stride = stride; a.slot = dslot.as<int32_t>();
    a.past = past.as<int32_t>(); a.out = out.p; a.ldo = H * D; a.out_type = t; a.heads = int(H); a.kv_heads = int(KV);
    a.head_dim = int(D); a.scale = float(1.0 / std::sqrt(double(D)));
    Dev ws(decode ? cuda::decode_attention_workspace(T, int(H), int(D)) : 1);
    const double ms = timed(o.repeat(), [&] {
      if (decode) cuda::decode_attention(a, T, ws.p, nullptr);
      else cuda::prefill_attention(a, T, nullptr);
    });
    return result(o, ms, {{"out", js(o.env, download(out, size_t(T * H * D), t))}});
  }));

  // sample({ logits, rows, vocab, temperature, topK, topP, minP, seed, step, steps?, mask?, repeat? }) → Int32Array
  // (with its `ms` per draw when repeated): the same settings for every row; with `steps` (an
  // Int32Array), row r draws at step steps[r]; with `mask` ([rows × ceil(vocab / 32)] bit words),
  // only allowed tokens are drawn.
  ops.Set("sample", op(env, "sample", [](const Opts& o) -> Napi::Value {
    const int64_t R = o.i("rows"), V = o.i("vocab");
    const double top_p = o.f("topP", 1), top_k = o.f("topK", 0), min_p = o.f("minP", 0);
    if (!(top_p > 0 && top_p <= 1) || top_k < 0 || !(min_p >= 0 && min_p <= 1)) fail("invalid_argument", "topP must be in (0, 1], topK ≥ 0 and minP in [0, 1]");
    Dev lg(o.f32("logits", size_t(R * V)).data(), size_t(R * V) * 4), out(size_t(R) * 4);
    std::vector<int32_t> steps = o.has("steps") ? o.i32("steps", size_t(R)) : std::vector<int32_t>(size_t(R), int32_t(o.f("step", 0)));
    std::vector<cuda::SampleArgs> args(static_cast<size_t>(R));
    for (int64_t r = 0; r < R; ++r)
      args[size_t(r)] = {float(o.f("temperature", 0)), int(top_k), float(top_p), float(min_p), uint64_t(o.f("seed", 0)), uint64_t(steps[size_t(r)])};
    Dev dargs(args.data(), args.size() * sizeof(cuda::SampleArgs));
    if (o.has("mask")) {
      const std::vector<int32_t> bits = o.i32("mask", size_t(R * ((V + 31) / 32)));
      Dev dbits(bits.data(), bits.size() * 4);
      cuda::mask_logits(lg.as<float>(), R, V, dbits.as<uint32_t>(), nullptr);
      check(cudaDeviceSynchronize(), "mask_logits");
    }
    Dev ws(cuda::sample_workspace(R));
    const double ms = timed(o.repeat(), [&] { cuda::sample(lg.as<float>(), R, V, dargs.as<cuda::SampleArgs>(), out.as<int32_t>(), ws.p, nullptr); });
    Napi::Int32Array ids = js(o.env, out.get<int32_t>(size_t(R)));
    ids.Set("ms", ms);
    return ids;
  }));
  return ops;
}

}  // namespace jamba::napi
