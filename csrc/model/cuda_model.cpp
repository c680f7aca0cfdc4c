#include "cuda_model.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/dtype.h"
#include "../core/error.h"
#include "../cuda/check.h"
#include "../cuda/kernels.h"
#include "cuda_pass.h"

namespace jamba {

using DT = cuda::DType;

DeviceBuffer::DeviceBuffer(size_t n) : bytes(n) { check(cudaMalloc(&p, n ? n : 1), "cudaMalloc"); }
DeviceBuffer::~DeviceBuffer() {
  if (p) cudaFree(p);
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (p) cudaFree(p);
    p = o.p;
    bytes = o.bytes;
    o.p = nullptr;
    o.bytes = 0;
  }
  return *this;
}

// ---------------------------------------------------------------- state pools

namespace {

// A sequence's state: one slot of the pools, given back when the sequence goes.
class SlotState : public DeviceState {
 public:
  SlotState(std::shared_ptr<CudaJambaModel::Pools> pools, int32_t slot) : pools_(std::move(pools)), slot_(slot) {}
  ~SlotState() override {
    std::lock_guard<std::mutex> lk(pools_->mu);
    pools_->free.push_back(slot_);
  }
  int32_t slot() const { return slot_; }
  const CudaJambaModel::Pools* pools() const { return pools_.get(); }
  void reset() override { pools_->zero(slot_); }
  size_t bytes(int64_t position) const override {
    const auto& p = *pools_;
    size_t b = 0;
    for (size_t i = 0; i < p.attention.size(); ++i)
      b += p.attention[i] ? size_t(position * p.kv_width()) * 2 * 2 : size_t(p.conv_size() + p.ssm_size()) * 4;
    return b;
  }
  void pull(SequenceState& host) const override {
    auto& p = *pools_;
    const int64_t pos = host.position(), kvw = p.kv_width();
    for (size_t i = 0; i < p.attention.size(); ++i) {
      LayerState& l = host.layer(i);
      if (!p.attention[i]) {
        p.copy(l.conv.data(), p.conv[i].as<float>() + slot_ * p.conv_size(), size_t(p.conv_size()) * 4, cudaMemcpyDeviceToHost, "pull conv");
        p.copy(l.ssm.data(), p.ssm[i].as<float>() + slot_ * p.ssm_size(), size_t(p.ssm_size()) * 4, cudaMemcpyDeviceToHost, "pull ssm");
        continue;
      }
      std::vector<uint16_t> kb(size_t(pos * kvw)), vb(size_t(pos * kvw));
      const size_t off = size_t(slot_) * size_t(p.context * kvw);
      p.copy(kb.data(), p.k[i].as<uint16_t>() + off, kb.size() * 2, cudaMemcpyDeviceToHost, "pull keys");
      p.copy(vb.data(), p.v[i].as<uint16_t>() + off, vb.size() * 2, cudaMemcpyDeviceToHost, "pull values");
      p.wait("pull");
      l.k.resize(kb.size());
      l.v.resize(vb.size());
      for (size_t j = 0; j < kb.size(); ++j) {
        l.k[j] = bf16_to_f32(kb[j]);
        l.v[j] = bf16_to_f32(vb[j]);
      }
    }
    p.wait("pull");
  }
  void push(const SequenceState& host) override { pools_->push(slot_, host); }

 private:
  std::shared_ptr<CudaJambaModel::Pools> pools_;
  int32_t slot_;
};

}  // namespace

// ---------------------------------------------------------------- loading

namespace {

// Synthetic weights: values in the ranges a trained Jamba has, so a benchmark's activations stay finite.
void synthesize(const TensorSource& s, void* out, DT type, int64_t n, cudaStream_t stream) {
  uint64_t seed = 1469598103934665603ull;
  for (char c : s.name) seed = (seed ^ uint64_t(uint8_t(c))) * 1099511628211ull;
  const std::string& nm = s.name;
  auto has = [&](const char* k) { return nm.find(k) != std::string::npos; };
  float lo = -0.035f, hi = 0.035f;
  if (has("norm")) lo = 0.9f, hi = 1.1f;
  else if (has("A_log")) lo = 0.f, hi = 2.7f;
  else if (has(".D")) lo = 0.5f, hi = 1.5f;
  else if (has("dt_proj.bias")) lo = -6.f, hi = -3.f;
  else if (has("conv1d")) lo = -0.5f, hi = 0.5f;
  cuda::fill_uniform(out, type, n, seed, lo, hi, stream);
  check(cudaStreamSynchronize(stream), "synthesize");
}

// Reads tensors one at a time into host staging and sends them to the device as bf16 rows
// (or, for a synthetic plan, makes them on the device).
class Uploader {
 public:
  Uploader(TensorReader& rd, std::map<std::string, size_t>& bytes, bool synthetic, cudaStream_t s)
      : rd_(rd), bytes_(bytes), synthetic_(synthetic), s_(s) {}

  std::vector<float> host_f32(const TensorSource& s) {
    if (!synthetic_) return rd_.read_f32(s);
    DeviceBuffer tmp(size_t(s.numel()) * 4);
    synthesize(s, tmp.p, DT::F32, s.numel(), s_);
    std::vector<float> v(size_t(s.numel()));
    check(cudaMemcpy(v.data(), tmp.p, v.size() * 4, cudaMemcpyDeviceToHost), "synthesize");
    return v;
  }

  DeviceBuffer f32(const TensorSource& s) {
    std::vector<float> v = host_f32(s);
    DeviceBuffer b(v.size() * 4);
    check(cudaMemcpy(b.p, v.data(), v.size() * 4, cudaMemcpyHostToDevice), "upload");
    bytes_["f32"] += b.bytes;
    return b;
  }

  // Row blocks stacked into one [Σ rows, k] matrix (q|k|v, gate|up), per expert when E > 1;
  // with int8 each expert is quantized on the device as it arrives.
  CudaJambaModel::Mat mat(const std::vector<std::vector<const TensorSource*>>& experts, bool int8, cudaStream_t s,
                          const TensorSource* bias = nullptr) {
    CudaJambaModel::Mat m;
    const auto& first = experts[0];
    m.k = first[0]->cols();
    for (auto* p : first) m.n += p->rows();
    const int64_t E = int64_t(experts.size()), nk = m.n * m.k;
    m.int8 = int8;
    m.w = DeviceBuffer(size_t(E * nk) * (int8 ? 1 : 2));
    DeviceBuffer scratch;
    if (int8) {
      m.scale = DeviceBuffer(size_t(E * m.n) * 4);
      scratch = DeviceBuffer(size_t(nk) * 2);
    }
    for (int64_t e = 0; e < E; ++e) {
      if (synthetic_) {
        // Made in place (bf16, or in the scratch buffer that the quantizer reads).
        uint16_t* dst = int8 ? scratch.as<uint16_t>() : m.w.as<uint16_t>() + e * nk;
        int64_t at = 0;
        for (auto* p : experts[size_t(e)]) {
          synthesize(*p, dst + at, DT::BF16, p->numel(), s);
          at += p->numel();
        }
        if (int8) {
          cuda::quantize_int8_rows(scratch.p, m.n, m.k, m.w.as<int8_t>() + e * nk, m.scale.as<float>() + e * m.n, s);
          check(cudaStreamSynchronize(s), "quantize");
        }
        continue;
      }
      std::vector<uint16_t> rows;
      rows.reserve(size_t(nk));
      for (auto* p : experts[size_t(e)]) {
        if (p->cols() != m.k) fail("checkpoint", "stacked tensors of different widths");
        std::vector<uint16_t> part = to_bf16_bits(rd_.read_f32(*p));
        rows.insert(rows.end(), part.begin(), part.end());
      }
      if (int8) {
        check(cudaMemcpy(scratch.p, rows.data(), rows.size() * 2, cudaMemcpyHostToDevice), "upload");
        cuda::quantize_int8_rows(scratch.p, m.n, m.k, m.w.as<int8_t>() + e * nk, m.scale.as<float>() + e * m.n, s);
        check(cudaStreamSynchronize(s), "quantize");
      } else {
        check(cudaMemcpy(m.w.as<uint16_t>() + e * nk, rows.data(), rows.size() * 2, cudaMemcpyHostToDevice), "upload");
      }
    }
    bytes_[int8 ? "i8" : "bf16"] += m.w.bytes;
    bytes_["f32"] += m.scale.bytes;
    if (bias && bias->present()) m.bias = f32(*bias);
    return m;
  }

 private:
  TensorReader& rd_;
  std::map<std::string, size_t>& bytes_;
  bool synthetic_;
  cudaStream_t s_;
};

}  // namespace

CudaJambaModel::CudaJambaModel(const ModelPlan& plan, std::function<void(uint64_t)> progress) : dims_(plan.dims) {
  int n = 0;
  check(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
  if (n == 0) fail("no_device", "no CUDA device is present");
  if (plan.max_sequences < 1 || plan.context_length < 1) fail("invalid_argument", "maxSequences and contextLength must be positive");
  cudaStream_t s;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  stream_ = s;
  TensorReader rd(std::move(progress));
  Uploader up(rd, bytes_, plan.synthetic, s);
  embed_ = up.mat({{&plan.embed}}, false, s);
  tied_ = !plan.lm_head.present();
  if (!tied_) lm_head_ = up.mat({{&plan.lm_head}}, false, s);
  final_norm_ = up.f32(plan.final_norm);
  for (const LayerPlan& lp : plan.layers) {
    Layer l;
    l.attention = lp.attention;
    l.moe = lp.moe;
    is_attention_.push_back(lp.attention);
    l.input_norm = up.f32(lp.input_norm);
    l.ff_norm = up.f32(lp.ff_norm);
    if (lp.attention) {
      l.qkv = up.mat({{&lp.attn.q, &lp.attn.k, &lp.attn.v}}, false, s);
      l.o = up.mat({{&lp.attn.o}}, false, s);
    } else {
      const MambaSources& m = lp.mamba;
      l.in_proj = up.mat({{&m.in_proj}}, false, s, &m.in_proj_bias);
      l.x_proj = up.mat({{&m.x_proj}}, false, s);
      l.dt_proj = up.mat({{&m.dt_proj}}, false, s);
      l.out_proj = up.mat({{&m.out_proj}}, false, s, &m.out_proj_bias);
      l.conv_w = up.f32(m.conv_weight);
      if (m.conv_bias.present()) l.conv_b = up.f32(m.conv_bias);
      std::vector<float> a = up.host_f32(m.a_log);
      for (float& v : a) v = -std::exp(v);
      l.a = DeviceBuffer(a.size() * 4);
      check(cudaMemcpy(l.a.p, a.data(), a.size() * 4, cudaMemcpyHostToDevice), "upload");
      bytes_["f32"] += l.a.bytes;
      l.d = up.f32(m.d);
      l.dt_bias = up.f32(m.dt_proj_bias);
      l.dt_norm = up.f32(m.dt_norm);
      l.b_norm = up.f32(m.b_norm);
      l.c_norm = up.f32(m.c_norm);
    }
    if (lp.moe) {
      l.router = up.mat({{&lp.router}}, false, s);
      std::vector<std::vector<const TensorSource*>> gu, dn;
      for (const MlpSources& e : lp.experts) {
        gu.push_back({&e.gate, &e.up});
        dn.push_back({&e.down});
      }
      l.gate_up = up.mat(gu, plan.experts_int8, s);
      l.down = up.mat(dn, plan.experts_int8, s);
    } else {
      l.gate_up = up.mat({{&lp.mlp.gate, &lp.mlp.up}}, false, s);
      l.down = up.mat({{&lp.mlp.down}}, false, s);
    }
    layers_.push_back(std::move(l));
  }
  // The state pools: every sequence slot, preallocated.
  pools_ = make_pools(plan.max_sequences, plan.context_length);
  for (size_t i = 0; i < layers_.size(); ++i)
    if (is_attention_[i]) bytes_["kv cache (bf16)"] += pools_->k[i].bytes + pools_->v[i].bytes;
    else bytes_["mamba states (f32)"] += pools_->conv[i].bytes + pools_->ssm[i].bytes;
  for (int32_t i = int32_t(plan.max_sequences) - 1; i >= 0; --i) pools_->free.push_back(i);
}

std::shared_ptr<CudaJambaModel::Pools> CudaJambaModel::make_pools(int64_t slots, int64_t context) const {
  auto pools = std::make_shared<Pools>();
  Pools& p = *pools;
  check(cudaStreamCreateWithFlags(&p.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  p.dims = dims_;
  p.attention = is_attention_;
  p.slots = slots;
  p.context = context;
  p.conv.resize(layers_.size());
  p.ssm.resize(layers_.size());
  p.k.resize(layers_.size());
  p.v.resize(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (is_attention_[i]) {
      p.k[i] = DeviceBuffer(size_t(p.slots * p.context * p.kv_width()) * 2);
      p.v[i] = DeviceBuffer(size_t(p.slots * p.context * p.kv_width()) * 2);
    } else {
      p.conv[i] = DeviceBuffer(size_t(p.slots * p.conv_size()) * 4);
      p.ssm[i] = DeviceBuffer(size_t(p.slots * p.ssm_size()) * 4);
    }
  }
  return pools;
}

CudaJambaModel::~CudaJambaModel() {
  drop_graphs();
  if (stream_) cudaStreamDestroy(as_stream(stream_));
}

void CudaJambaModel::drop_graphs() const {
  for (auto& [key, g] : graphs_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(g.exec));
  graphs_.clear();
}

std::unique_ptr<SequenceState> CudaJambaModel::new_state() const {
  int32_t slot;
  {
    std::lock_guard<std::mutex> lk(pools_->mu);
    if (pools_->free.empty())
      fail("busy", "all " + std::to_string(pools_->slots) + " sequence slots of this CUDA model are in use (maxSequences)");
    slot = pools_->free.back();
    pools_->free.pop_back();
  }
  auto dev = std::make_unique<SlotState>(pools_, slot);
  dev->reset();
  return std::make_unique<SequenceState>(dims_, is_attention_, std::move(dev));
}

std::map<std::string, size_t> CudaJambaModel::bytes_by_dtype() const { return bytes_; }

std::vector<float> CudaJambaModel::embed(const std::vector<int32_t>& ids) const {
  const int64_t H = dims_.hidden;
  std::vector<float> out(ids.size() * size_t(H));
  std::vector<uint16_t> row(static_cast<size_t>(H));
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= dims_.vocab)
      fail("invalid_argument", "token id " + std::to_string(ids[i]) + " is outside [0, " + std::to_string(dims_.vocab) + ")");
    check(cudaMemcpy(row.data(), embed_.w.as<uint16_t>() + int64_t(ids[i]) * H, size_t(H) * 2, cudaMemcpyDeviceToHost), "embed");
    for (int64_t c = 0; c < H; ++c) out[i * size_t(H) + size_t(c)] = bf16_to_f32(row[size_t(c)]);
  }
  return out;
}

// ---------------------------------------------------------------- forward

// Every layer, as kernels on the model's stream; an abort is honoured between layers (not while
// a decode step is being captured as a graph: a step is short, and the caller checked before).
void CudaJambaModel::layers(Workspace& ws, const ForwardRequest& req, bool capturing) const {
  const int64_t T = ws.T, H = dims_.hidden;
  cudaStream_t s = as_stream(stream_);
  for (size_t li = 0; li < layers_.size(); ++li) {
    if (!capturing && req.abort.size() == req.states.size() &&
        std::all_of(req.abort.begin(), req.abort.end(), [](const int32_t* f) { return f && __atomic_load_n(f, __ATOMIC_RELAXED) != 0; }))
      fail("aborted", "the operation was aborted");
    const Layer& l = layers_[li];
    cuda::rmsnorm_residual(ws.h, H, ws.has_delta ? ws.delta : nullptr, H, DT::BF16, T, H, l.input_norm.as<float>(), dims_.eps, ws.x, H,
                           DT::BF16, s);
    ws.mark("residual add + norm");
    if (l.attention) attention(l, li, ws);
    else mamba(l, li, ws);
    cuda::rmsnorm_residual(ws.h, H, ws.delta, H, DT::BF16, T, H, l.ff_norm.as<float>(), dims_.eps, ws.x, H, DT::BF16, s);
    ws.mark("residual add + norm");
    feed_forward(l, li, ws);
    if (ws.trace) {
      // The layer's output is the residual stream with its feed-forward added: a pending delta is
      // added here (into the scratch norm, which the next layer makes again).
      if (ws.has_delta)
        cuda::rmsnorm_residual(ws.h, H, ws.delta, H, DT::BF16, T, H, l.ff_norm.as<float>(), dims_.eps, ws.x, H, DT::BF16, s);
      ws.has_delta = false;
      ws.keep("layer" + std::to_string(li) + ".out", ws.h, T * H, s);
    }
  }
}

void CudaJambaModel::gemm(const void* a, int64_t lda, const Mat& m, const Rows& r, const float* row_scale, void* out, int64_t ldo,
                          bool f32_out) const {
  const cuda::GroupedWeights w{m.w.p, m.int8 ? m.scale.as<float>() : nullptr, m.int8, m.n, m.k};
  const DT ot = f32_out ? DT::F32 : DT::BF16;
  if (r.skinny)
    cuda::skinny_gemm(a, lda, w, r.offsets, r.active, r.experts, r.rows, r.group_rows, row_scale, false, out, ldo, ot, as_stream(stream_));
  else
    cuda::grouped_gemm(a, lda, w, r.offsets, r.experts, r.rows, row_scale, out, ldo, ot, as_stream(stream_));
  if (m.bias.p) cuda::add_bias(out, ldo, ot, r.rows, m.n, m.bias.as<float>(), as_stream(stream_));
}

void CudaJambaModel::gemm_silu_gate(const void* a, int64_t lda, const Mat& m, const Rows& r, void* gu, void* act) const {
  const int64_t I = m.n / 2;
  if (r.skinny && !m.bias.p) {
    const cuda::GroupedWeights w{m.w.p, m.int8 ? m.scale.as<float>() : nullptr, m.int8, m.n, m.k};
    cuda::skinny_gemm(a, lda, w, r.offsets, r.active, r.experts, r.rows, r.group_rows, nullptr, true, act, I, DT::BF16, as_stream(stream_));
    return;
  }
  gemm(a, lda, m, r, nullptr, gu, 2 * I, false);
  cuda::silu_gate(gu, 2 * I, DT::BF16, r.rows, I, act, I, as_stream(stream_));
}

void CudaJambaModel::gemm_dx(const void* dy, int64_t lddy, const Mat& m, const Rows& r, const float* row_scale, float* dx, int64_t lddx,
                             bool accumulate) const {
  const cuda::GroupedWeights w{m.w.p, m.int8 ? m.scale.as<float>() : nullptr, m.int8, m.n, m.k};
  cuda::grouped_gemm_dx(dy, lddy, w, r.offsets, r.experts, r.rows, row_scale, dx, lddx, accumulate, as_stream(stream_));
}

void CudaJambaModel::mamba(const Layer& l, size_t li, Workspace& ws) const {
  const int64_t T = ws.T, Di = dims_.d_inner, N = dims_.d_state, R = dims_.dt_rank, P = R + 2 * N, K = dims_.d_conv;
  cudaStream_t s = as_stream(stream_);
  Pools& pl = *ws.pools;
  gemm(ws.x, dims_.hidden, l.in_proj, ws.all, nullptr, ws.xz, 2 * Di, false);
  ws.mark("mamba in_proj");
  const float* cb = l.conv_b.p ? l.conv_b.as<float>() : nullptr;
  if (ws.decode) {
    cuda::causal_conv1d_update_silu(ws.xz, 2 * Di, DT::BF16, ws.S, Di, l.conv_w.as<float>(), int(K), cb, pl.conv[li].as<float>(),
                                    ws.d_slot, ws.xc, Di, DT::BF16, s);
  } else {
    for (int64_t q = 0; q < ws.S; ++q) {
      const int64_t o = ws.offsets[size_t(q)], n = ws.offsets[size_t(q + 1)] - o;
      cuda::causal_conv1d_silu(static_cast<uint16_t*>(ws.xz) + o * 2 * Di, 2 * Di, DT::BF16, n, Di, l.conv_w.as<float>(), int(K), cb,
                               pl.conv[li].as<float>() + ws.slot[size_t(q)] * pl.conv_size(), static_cast<uint16_t*>(ws.xc) + o * Di, Di,
                               DT::BF16, s);
    }
  }
  ws.mark("mamba conv");
  gemm(ws.xc, Di, l.x_proj, ws.all, nullptr, ws.p, P, true);
  ws.mark("mamba x_proj");
  if (ws.decode) {
    // One launch from the x_proj rows to y: the dt/B/C norms, dt_proj and the state update.
    cuda::MambaDecodeArgs m{};
    m.p = ws.p; m.ldp = P;
    m.dt_norm = l.dt_norm.as<float>(); m.b_norm = l.b_norm.as<float>(); m.c_norm = l.c_norm.as<float>(); m.eps = dims_.eps;
    m.dt_proj = l.dt_proj.w.p; m.dt_bias = l.dt_bias.as<float>(); m.a = l.a.as<float>(); m.d_skip = l.d.as<float>();
    m.u = ws.xc; m.ldu = Di;
    m.z = static_cast<uint16_t*>(ws.xz) + Di; m.ldz = 2 * Di;
    m.y = ws.y; m.ldy = Di;
    m.type = DT::BF16;
    m.d_inner = Di; m.d_state = N; m.dt_rank = R;
    cuda::mamba_decode_step(m, pl.ssm[li].as<float>(), ws.d_slot, ws.S, s);
    ws.mark("mamba dt/B/C norms + dt_proj + state update");
    gemm(ws.y, Di, l.out_proj, ws.all, nullptr, ws.delta, dims_.hidden, false);
    ws.mark("mamba out_proj");
    return;
  }
  // dt, B and C each get their own RMSNorm (Jamba's addition to Mamba); bf16 for what follows.
  auto* pn = static_cast<uint16_t*>(ws.pn);
  cuda::rmsnorm_residual(ws.p, P, nullptr, 0, DT::F32, T, R, l.dt_norm.as<float>(), dims_.eps, pn, P, DT::BF16, s);
  cuda::rmsnorm_residual(ws.p + R, P, nullptr, 0, DT::F32, T, N, l.b_norm.as<float>(), dims_.eps, pn + R, P, DT::BF16, s);
  cuda::rmsnorm_residual(ws.p + R + N, P, nullptr, 0, DT::F32, T, N, l.c_norm.as<float>(), dims_.eps, pn + R + N, P, DT::BF16, s);
  ws.mark("mamba dt/B/C norms");
  gemm(pn, P, l.dt_proj, ws.all, nullptr, ws.dt, Di, false);
  ws.mark("mamba dt_proj");
  cuda::ScanArgs a{};
  a.u = ws.xc; a.ldu = Di;
  a.dt = ws.dt; a.lddt = Di;
  a.b = pn + R; a.ldb = P;
  a.c = pn + R + N; a.ldc = P;
  a.z = static_cast<uint16_t*>(ws.xz) + Di; a.ldz = 2 * Di;
  a.in_type = DT::BF16;
  a.a = l.a.as<float>(); a.d_skip = l.d.as<float>(); a.dt_bias = l.dt_bias.as<float>();
  a.y = ws.y; a.ldy = Di; a.out_type = DT::BF16;
  a.d_inner = Di; a.d_state = N;
  for (int64_t q = 0; q < ws.S; ++q) {
    const int64_t o = ws.offsets[size_t(q)];
    cuda::ScanArgs b = a;
    b.u = static_cast<const uint16_t*>(a.u) + o * Di;
    b.dt = static_cast<const uint16_t*>(a.dt) + o * Di;
    b.b = pn + o * P + R;
    b.c = pn + o * P + R + N;
    b.z = static_cast<const uint16_t*>(a.z) + o * 2 * Di;
    b.y = static_cast<uint16_t*>(ws.y) + o * Di;
    b.t_len = ws.offsets[size_t(q + 1)] - o;
    cuda::selective_scan(b, pl.ssm[li].as<float>() + ws.slot[size_t(q)] * pl.ssm_size(), s);
  }
  ws.mark("mamba scan");
  gemm(ws.y, Di, l.out_proj, ws.all, nullptr, ws.delta, dims_.hidden, false);
  ws.mark("mamba out_proj");
}

void CudaJambaModel::attention(const Layer& l, size_t li, Workspace& ws) const {
  const int64_t hd = dims_.head_dim, qw = dims_.heads * hd, kvw = dims_.kv_heads * hd, W = qw + 2 * kvw;
  cudaStream_t s = as_stream(stream_);
  Pools& pl = *ws.pools;
  gemm(ws.x, dims_.hidden, l.qkv, ws.all, nullptr, ws.qkv, W, false);
  ws.mark("attention q|k|v");
  cuda::append_kv(ws.qkv, W, DT::BF16, qw, qw + kvw, ws.longest, int(kvw), pl.k[li].p, pl.v[li].p, pl.context * kvw, ws.d_slot,
                  ws.d_past, ws.S, ws.d_tokoff, s);
  ws.mark("attention KV append");
  cuda::AttentionArgs a{};
  a.q = ws.qkv; a.ldq = W; a.q_type = DT::BF16;
  a.k_pool = pl.k[li].p; a.v_pool = pl.v[li].p; a.kv_stride = pl.context * kvw;
  a.out = ws.att; a.ldo = qw; a.out_type = DT::BF16;
  a.heads = int(dims_.heads); a.kv_heads = int(dims_.kv_heads); a.head_dim = int(hd);
  a.scale = float(1.0 / std::sqrt(double(hd)));
  if (ws.decode) {
    a.slot = ws.d_slot;
    a.past = ws.d_past;
    cuda::decode_attention(a, ws.S, ws.attn_ws, s);
  } else {
    for (int64_t q = 0; q < ws.S; ++q) {
      const int64_t o = ws.offsets[size_t(q)];
      cuda::AttentionArgs b = a;
      b.q = static_cast<const uint16_t*>(ws.qkv) + o * W;
      b.out = static_cast<uint16_t*>(ws.att) + o * qw;
      b.slot = ws.d_slot + q;
      b.past = ws.d_past + q;
      cuda::prefill_attention(b, ws.offsets[size_t(q + 1)] - o, s);
    }
  }
  ws.mark("attention");
  gemm(ws.att, qw, l.o, ws.all, nullptr, ws.delta, dims_.hidden, false);
  ws.mark("attention o");
}

void CudaJambaModel::feed_forward(const Layer& l, size_t li, Workspace& ws) const {
  const int64_t T = ws.T, H = dims_.hidden, I = l.gate_up.n / 2;
  cudaStream_t s = as_stream(stream_);
  if (!l.moe) {
    gemm_silu_gate(ws.x, H, l.gate_up, ws.all, ws.gu, ws.act);
    ws.mark("dense MLP gate|up");
    gemm(ws.act, I, l.down, ws.all, nullptr, ws.delta, H, false);
    ws.mark("dense MLP down");
    ws.has_delta = true;
    return;
  }
  const int E = int(dims_.experts), k = int(dims_.top_k);
  const int64_t R = T * k;
  gemm(ws.x, H, l.router, ws.all, nullptr, ws.router, E, true);
  ws.mark("MoE router");
  ws.keep("layer" + std::to_string(li) + ".router_logits", ws.router, T * E, s);
  cuda::moe_route(ws.router, T, E, k, ws.idx, ws.weight, ws.counts, ws.expert_off, ws.active, ws.row_of, ws.token_of_row, ws.row_weight, s);
  ws.mark("MoE routing");
  cuda::gather_rows(ws.x, H, DT::BF16, ws.token_of_row, R, H, ws.xg, H, s);
  ws.mark("MoE gather + combine");
  // An expert gets at most one row per token.
  // The skinny expert kernels are sized for 4 rows per expert, not for the batch: top-2 of 16 at
  // 16 sequences gives about 2.3 rows per active expert, and the rare expert with more takes a
  // second pass over its weights (same sums, same bits) instead of every expert paying for 16
  // rows of accumulators (206 registers, 2 blocks per SM).
  const Rows grouped{E, ws.expert_off, ws.active, R, std::min<int64_t>(T, 4), ws.all.skinny};
  gemm_silu_gate(ws.xg, H, l.gate_up, grouped, ws.gu, ws.act);
  ws.mark("experts gate|up");
  gemm(ws.act, I, l.down, grouped, ws.row_weight, ws.ey, H, false);
  ws.mark("experts down");
  cuda::moe_combine(ws.ey, DT::BF16, H, ws.row_of, T, k, ws.h, true, s);
  ws.mark("MoE gather + combine");
  ws.has_delta = false;  // added straight into the residual stream
}

// The buffers of a pass over ws.T rows in ws.S sequences, each asked of `want` (pointer, bytes);
// the feed-forward's are sized for `ffn_rows` tokens at a time (ws.T, or a training pass's chunk).
void CudaJambaModel::carve(Workspace& ws, int64_t ffn_rows, const std::function<void(void**, size_t)>& want) const {
  const int64_t T = ws.T, H = dims_.hidden, Di = dims_.d_inner, N = dims_.d_state, P = dims_.dt_rank + 2 * N;
  const int64_t W = (dims_.heads + 2 * dims_.kv_heads) * dims_.head_dim, qw = dims_.heads * dims_.head_dim;
  const int64_t E = dims_.experts, R = ffn_rows * std::max<int64_t>(dims_.top_k, 1), Imax = max_inner();
  want(reinterpret_cast<void**>(&ws.h), size_t(T * H) * 4);
  want(&ws.x, size_t(T * H) * 2);
  want(&ws.delta, size_t(T * H) * 2);
  want(&ws.xz, size_t(T * 2 * Di) * 2);
  want(&ws.xc, size_t(T * Di) * 2);
  want(reinterpret_cast<void**>(&ws.p), size_t(T * P) * 4);
  want(&ws.pn, size_t(T * P) * 2);
  want(&ws.dt, size_t(T * Di) * 2);
  want(&ws.y, size_t(T * Di) * 2);
  want(&ws.qkv, size_t(T * W) * 2);
  want(&ws.att, size_t(T * qw) * 2);
  want(&ws.attn_ws, cuda::decode_attention_workspace(ws.S, int(dims_.heads), int(dims_.head_dim)));
  want(reinterpret_cast<void**>(&ws.router), size_t(ffn_rows * std::max<int64_t>(E, 1)) * 4);
  want(reinterpret_cast<void**>(&ws.weight), size_t(R) * 4);
  want(reinterpret_cast<void**>(&ws.row_weight), size_t(R) * 4);
  want(reinterpret_cast<void**>(&ws.idx), size_t(R) * 4);
  want(reinterpret_cast<void**>(&ws.counts), size_t(std::max<int64_t>(E, 1)) * 4);
  want(reinterpret_cast<void**>(&ws.expert_off), size_t(std::max<int64_t>(E, 1) + 1) * 4);
  want(reinterpret_cast<void**>(&ws.active), size_t(std::max<int64_t>(E, 1)) * 4);
  want(reinterpret_cast<void**>(&ws.row_of), size_t(R) * 4);
  want(reinterpret_cast<void**>(&ws.token_of_row), size_t(R) * 4);
  want(&ws.xg, size_t(R * H) * 2);
  want(&ws.gu, size_t(R * 2 * Imax) * 2);
  want(&ws.act, size_t(R * Imax) * 2);
  want(&ws.ey, size_t(R * H) * 2);
}

int64_t CudaJambaModel::max_inner() const {
  int64_t inner = std::max<int64_t>(dims_.intermediate, 1);
  for (const Layer& l : layers_) inner = std::max(inner, l.gate_up.n / 2);
  return inner;
}

ForwardResult CudaJambaModel::forward(const ForwardRequest& req) const {
  std::lock_guard<std::mutex> lk(mu_);
  const int64_t H = dims_.hidden, V = dims_.vocab;
  if (!req.embeds.empty() && req.embeds.size() != req.states.size()) fail("invalid_argument", "embeds: one entry per sequence");
  Workspace ws;
  ws.pools = pools_.get();
  ws.S = int64_t(req.states.size());
  ws.offsets.push_back(0);
  std::vector<int64_t> erows;
  for (size_t q = 0; q < req.states.size(); ++q) {
    auto* dev = dynamic_cast<SlotState*>(req.states[q]->device());
    if (!dev || dev->pools() != pools_.get()) fail("invalid_argument", "sequence " + std::to_string(q) + " belongs to another model");
    for (int32_t id : req.tokens[q])
      if (id < 0 || id >= V) fail("invalid_argument", "token id " + std::to_string(id) + " is outside [0, " + std::to_string(V) + ")");
    if (!req.embeds.empty() && req.embeds[q].size() % size_t(H) != 0)
      fail("invalid_argument", "embeds[" + std::to_string(q) + "] is not a whole number of rows of " + std::to_string(H));
    const int64_t e = req.embeds.empty() ? 0 : int64_t(req.embeds[q].size()) / H, n = e + int64_t(req.tokens[q].size());
    if (n == 0 && req.logits == ForwardRequest::Logits::Last) fail("invalid_argument", "sequence " + std::to_string(q) + " has no tokens");
    const int64_t pos = req.states[q]->position();
    if (pos + n > pools_->context)
      fail("invalid_argument", "sequence " + std::to_string(q) + " would hold " + std::to_string(pos + n) + " positions, more than the context length " +
                                   std::to_string(pools_->context) + " this model was loaded with (contextLength)");
    erows.push_back(e);
    ws.offsets.push_back(ws.offsets.back() + n);
    ws.slot.push_back(dev->slot());
    ws.past.push_back(int32_t(pos));
    ws.longest = std::max(ws.longest, n);
  }
  ws.T = ws.offsets.back();
  ForwardResult res;
  if (ws.T == 0) return res;
  ws.decode = ws.longest == 1 && ws.T == ws.S;
  if (req.abort.size() == req.states.size() && !req.abort.empty() &&
      std::all_of(req.abort.begin(), req.abort.end(), [](const int32_t* f) { return f && __atomic_load_n(f, __ATOMIC_RELAXED) != 0; }))
    fail("aborted", "the operation was aborted");
  const int64_t T = ws.T;
  const int64_t rows_out = req.logits == ForwardRequest::Logits::All ? T : req.logits == ForwardRequest::Logits::Last ? ws.S : 0;

  // One arena for the pass: sizes first, then the carving.
  size_t total = 0;
  std::vector<std::pair<void**, size_t>> plan;
  auto want = [&](void** ptr, size_t bytes) {
    plan.push_back({ptr, bytes});
    total += (bytes + 255) / 256 * 256;
  };
  std::vector<int32_t> tokens;
  for (auto& t : req.tokens) tokens.insert(tokens.end(), t.begin(), t.end());
  void *d_tokens, *logits_rows, *xf, *xsel, *xb, *d_last, *d_sample_args, *d_sampled, *d_masks, *d_sample_ws;
  bool sampling = false, all_sampled = !req.sample.empty();
  for (const SampleSpec& sp : req.sample) {
    sampling = sampling || sp.on;
    all_sampled = all_sampled && sp.on;
  }
  if (!req.sample.empty() && req.sample.size() != req.states.size()) fail("invalid_argument", "sample: one entry per sequence");
  if (sampling && req.logits != ForwardRequest::Logits::Last) fail("invalid_argument", "sampling in the pass needs logits 'last'");
  const int64_t mask_words = (V + 31) / 32;
  bool masked = false;
  for (size_t q = 0; q < req.sample.size(); ++q) {
    if (req.sample[q].mask.empty()) continue;
    if (int64_t(req.sample[q].mask.size()) != mask_words)
      fail("invalid_argument", "sample[" + std::to_string(q) + "].mask has " + std::to_string(req.sample[q].mask.size()) + " words, needs " + std::to_string(mask_words));
    masked = true;
  }
  want(&d_tokens, tokens.size() * 4 + 4);
  want(reinterpret_cast<void**>(&ws.d_slot), size_t(ws.S) * 4);
  want(reinterpret_cast<void**>(&ws.d_past), size_t(ws.S) * 4);
  want(reinterpret_cast<void**>(&ws.d_tokoff), size_t(ws.S + 1) * 4);
  want(reinterpret_cast<void**>(&ws.d_off_all), 8);
  want(reinterpret_cast<void**>(&ws.d_off_rows), 8);
  want(&d_last, size_t(ws.S) * 4);
  want(&d_sample_args, size_t(ws.S) * sizeof(cuda::SampleArgs));
  want(&d_sampled, size_t(ws.S) * 4);
  want(&d_sample_ws, cuda::sample_workspace(ws.S));
  carve(ws, T, want);
  want(&xf, size_t(T * H) * 4);
  want(&xsel, size_t(std::max<int64_t>(rows_out, 1) * H) * 4);
  want(&xb, size_t(std::max<int64_t>(rows_out, 1) * H) * 2);
  want(&logits_rows, size_t(std::max<int64_t>(rows_out, 1) * V) * 4);
  // Last: what a captured decode step uses must sit at the same addresses whether or not this
  // step is masked (the graph key does not say), so sizes that vary step to step come after it.
  want(&d_masks, masked ? size_t(ws.S * mask_words) * 4 : 4);
  if (arena_.bytes < total) {
    drop_graphs();  // they point into the old arena
    arena_ = DeviceBuffer(total + total / 4);
  }
  size_t at = 0;
  uint64_t layout = 1469598103934665603ull ^ uint64_t(reinterpret_cast<uintptr_t>(arena_.p));  // FNV-1a of the carving
  for (auto& [ptr, bytes] : plan) {
    *ptr = static_cast<char*>(arena_.p) + at;
    if (ptr != &d_masks) layout = (layout ^ at) * 1099511628211ull;
    at += (bytes + 255) / 256 * 256;
  }

  ws.all = Rows{1, ws.d_off_all, nullptr, T, T, ws.decode && T <= cuda::kSkinnyRows};
  cudaStream_t s = as_stream(stream_);
  pools_->wait("slot operations");  // zeroed or restored slots are ready
  auto put = [&](void* dst, const void* src, size_t bytes) { check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), "upload"); };
  std::vector<int32_t> tokoff(ws.offsets.begin(), ws.offsets.end()), off_all{0, int32_t(T)}, off_rows{0, int32_t(rows_out)}, last;
  for (int64_t q = 0; q < ws.S; ++q) last.push_back(int32_t(ws.offsets[size_t(q + 1)] - 1));
  try {
    put(d_tokens, tokens.data(), tokens.size() * 4);
    put(ws.d_slot, ws.slot.data(), ws.slot.size() * 4);
    put(ws.d_past, ws.past.data(), ws.past.size() * 4);
    put(ws.d_tokoff, tokoff.data(), tokoff.size() * 4);
    put(ws.d_off_all, off_all.data(), 8);
    put(ws.d_off_rows, off_rows.data(), 8);
    put(d_last, last.data(), last.size() * 4);
    // Soft-prompt rows go straight into the residual stream.
    bool embeds = false;
    for (int64_t q = 0; q < ws.S; ++q)
      if (erows[size_t(q)]) {
        put(ws.h + ws.offsets[size_t(q)] * H, req.embeds[size_t(q)].data(), size_t(erows[size_t(q)] * H) * 4);
        embeds = true;
      }
    float* sel = static_cast<float*>(req.logits == ForwardRequest::Logits::Last ? xsel : xf);
    // The pass from the tokens' embedding rows to the logits: the part a decode step replays.
    auto compute = [&](bool capturing) {
      if (!embeds) {
        // Every row is a token, in sequence order: one launch for the batch.
        cuda::embed_rows(embed_.w.p, DT::BF16, H, static_cast<int32_t*>(d_tokens), T, ws.h, s);
      } else {
        int64_t tok_at = 0;
        for (int64_t q = 0; q < ws.S; ++q) {
          const int64_t o = ws.offsets[size_t(q)], e = erows[size_t(q)], n = int64_t(req.tokens[size_t(q)].size());
          cuda::embed_rows(embed_.w.p, DT::BF16, H, static_cast<int32_t*>(d_tokens) + tok_at, n, ws.h + (o + e) * H, s);
          tok_at += n;
        }
      }
      ws.mark("embedding");
      ws.keep("embed", ws.h, T * H, s);
      ws.has_delta = false;
      layers(ws, req, capturing);
      cuda::rmsnorm_residual(ws.h, H, ws.has_delta ? ws.delta : nullptr, H, DT::BF16, T, H, final_norm_.as<float>(), dims_.eps, xf, H,
                             DT::F32, s);
      ws.mark("residual add + norm");
      ws.keep("final_norm", static_cast<const float*>(xf), T * H, s);
      if (!rows_out) return;
      if (req.logits == ForwardRequest::Logits::Last) cuda::gather_rows(xf, H, DT::F32, static_cast<int32_t*>(d_last), rows_out, H, xsel, H, s);
      cuda::to_bf16(sel, rows_out * H, xb, s);
      gemm(xb, H, tied_ ? embed_ : lm_head_, Rows{1, ws.d_off_rows, nullptr, rows_out, rows_out, ws.all.skinny}, nullptr, logits_rows, V, true);
      ws.mark("LM head");
    };
    // A profiled pass runs op by op, with an event after each (events in a graph would not time).
    std::optional<OpTimer> timer;
    if (req.profile) ws.timer = &timer.emplace(s);
    if (req.capture) ws.trace = &res.captured;
    if (ws.decode && !embeds && !req.profile && !req.capture) {
      // A decode step is the same kernels on the same addresses every time: captured once per
      // shape as a CUDA graph, then replayed (one launch instead of hundreds). The graph keeps the
      // arena carving it was captured with; a step carved otherwise captures it again rather than
      // replaying into stale addresses.
      const std::string key = std::to_string(ws.S) + "/" + std::to_string(int(req.logits));
      auto it = graphs_.find(key);
      if (it != graphs_.end() && it->second.layout != layout) {
        cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(it->second.exec));
        graphs_.erase(it);
        it = graphs_.end();
      }
      if (it == graphs_.end()) {
        check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
        cudaGraph_t graph = nullptr;
        try {
          compute(true);
        } catch (...) {
          (void)cudaStreamEndCapture(s, &graph);
          if (graph) cudaGraphDestroy(graph);
          throw;
        }
        check(cudaStreamEndCapture(s, &graph), "cudaStreamEndCapture");
        cudaGraphExec_t exec = nullptr;
        const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);
        check(e, "cudaGraphInstantiate");
        it = graphs_.emplace(key, CapturedGraph{exec, layout}).first;
      }
      check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(it->second.exec), s), "cudaGraphLaunch");
    } else {
      compute(false);
    }
    std::vector<cuda::SampleArgs> sargs;  // host staging, alive until the pass's final synchronisation
    std::vector<uint32_t> bits;
    if (sampling) {
      for (const SampleSpec& sp : req.sample)
        sargs.push_back({sp.on ? sp.temperature : 0.f, sp.top_k, sp.on ? sp.top_p : 1.f, sp.on ? sp.min_p : 0.f, sp.seed, sp.step});
      put(d_sample_args, sargs.data(), sargs.size() * sizeof(cuda::SampleArgs));
      if (masked) {
        // Rows without a grammar allow every token.
        bits.assign(size_t(ws.S * mask_words), 0xffffffffu);
        for (size_t q = 0; q < req.sample.size(); ++q)
          if (!req.sample[q].mask.empty()) std::copy(req.sample[q].mask.begin(), req.sample[q].mask.end(), bits.begin() + int64_t(q) * mask_words);
        put(d_masks, bits.data(), bits.size() * 4);
        cuda::mask_logits(static_cast<float*>(logits_rows), ws.S, V, static_cast<uint32_t*>(d_masks), s);
      }
      cuda::sample(static_cast<float*>(logits_rows), ws.S, V, static_cast<cuda::SampleArgs*>(d_sample_args), static_cast<int32_t*>(d_sampled), d_sample_ws, s);
      ws.mark("sampling");
      res.sampled.resize(size_t(ws.S));
      check(cudaMemcpyAsync(res.sampled.data(), d_sampled, size_t(ws.S) * 4, cudaMemcpyDeviceToHost, s), "sampled");
    }
    if (rows_out && !all_sampled) {
      res.logits.resize(size_t(rows_out * V));
      check(cudaMemcpyAsync(res.logits.data(), logits_rows, res.logits.size() * 4, cudaMemcpyDeviceToHost, s), "logits");
      if (req.hidden) {
        res.hidden.resize(size_t(rows_out * H));
        check(cudaMemcpyAsync(res.hidden.data(), sel, res.hidden.size() * 4, cudaMemcpyDeviceToHost, s), "hidden");
      }
    }
    check(cudaStreamSynchronize(s), "forward");
    if (timer) res.profile = timer->totals();
  } catch (...) {
    // A half-advanced state is worse than none: drop what these sequences had.
    (void)cudaStreamSynchronize(s);
    for (auto* st : req.states) st->reset();
    throw;
  }
  for (int64_t q = 0; q < ws.S; ++q) req.states[size_t(q)]->advance(ws.offsets[size_t(q + 1)] - ws.offsets[size_t(q)]);
  for (size_t q = 0; q < res.sampled.size(); ++q)
    if (!req.sample[q].on) res.sampled[q] = -1;
  return res;
}

}  // namespace jamba
