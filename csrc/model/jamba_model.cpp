#include "jamba_model.h"

#include <cmath>
#include <cstring>

#include "../core/error.h"
#include "../cpu/attention.h"
#include "../cpu/conv1d.h"
#include "../cpu/norm.h"
#include "../cpu/ssm_scan.h"

namespace jamba {

namespace {


// Reads matrices that are used as one product (q|k|v, gate|up) into one buffer and packs it once.
// Mixed dtypes are widened to float32 so the packed product has a single weight type.
cpu::PackedWeight pack_rows(TensorReader& rd, const std::vector<const TensorSource*>& parts, bool int8) {
  DType dt = parts[0]->dtype;
  int64_t n = 0;
  const int64_t k = parts[0]->cols();
  for (auto* p : parts) {
    if (p->dtype != dt) dt = DType::F32;
    n += p->rows();
  }
  // The raw rows, in a buffer that goes back to the OS when freed (see Tensor::empty).
  Tensor buf = Tensor::empty(dt, {n, k});
  auto* dst = static_cast<char*>(buf.raw());
  size_t off = 0;
  for (auto* p : parts) {
    if (p->dtype == dt) {
      rd.read(*p, dst + off);
    } else {
      std::vector<float> f = rd.read_f32(*p);
      std::memcpy(dst + off, f.data(), f.size() * sizeof(float));
    }
    off += size_t(p->rows() * k) * dtype_size(dt);
  }
  return int8 ? cpu::pack_weight_int8(dst, dt, n, k) : cpu::pack_weight(dst, dt, n, k);
}

cpu::PackedWeight pack_one(TensorReader& rd, const TensorSource& s, const TensorSource* bias = nullptr) {
  cpu::PackedWeight w = pack_rows(rd, {&s}, false);
  if (bias && bias->present()) {
    std::vector<float> b = rd.read_f32(*bias);
    w.bias = Tensor::empty(DType::F32, {int64_t(b.size())});
    std::memcpy(w.bias.raw(), b.data(), b.size() * sizeof(float));
  }
  return w;
}

cpu::GatedMlp load_mlp(TensorReader& rd, const MlpSources& s, bool int8) {
  cpu::GatedMlp m;
  m.gate_up = pack_rows(rd, {&s.gate, &s.up}, int8);
  m.down = pack_rows(rd, {&s.down}, int8);
  return m;
}

void check_abort(const ForwardRequest& req) {
  if (req.abort.size() != req.states.size()) return;
  for (const int32_t* flag : req.abort)
    if (!flag || __atomic_load_n(flag, __ATOMIC_RELAXED) == 0) return;
  fail("aborted", "the operation was aborted");
}

}  // namespace

JambaModel::JambaModel(const ModelPlan& plan, std::function<void(uint64_t)> progress) : dims_(plan.dims) {
  TensorReader rd(std::move(progress));
  embed_ = pack_one(rd, plan.embed);
  tied_ = !plan.lm_head.present();
  if (!tied_) lm_head_ = pack_one(rd, plan.lm_head);
  final_norm_ = rd.read_f32(plan.final_norm);
  layers_.resize(plan.layers.size());
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    const LayerPlan& lp = plan.layers[i];
    Layer& l = layers_[i];
    l.attention = lp.attention;
    l.moe = lp.moe;
    is_attention_.push_back(lp.attention);
    l.input_norm = rd.read_f32(lp.input_norm);
    l.ff_norm = rd.read_f32(lp.ff_norm);
    if (lp.attention) {
      l.attn.qkv = pack_rows(rd, {&lp.attn.q, &lp.attn.k, &lp.attn.v}, false);
      l.attn.o = pack_one(rd, lp.attn.o);
    } else {
      const MambaSources& m = lp.mamba;
      l.mamba.in_proj = pack_one(rd, m.in_proj, &m.in_proj_bias);
      l.mamba.x_proj = pack_one(rd, m.x_proj);
      l.mamba.dt_proj = pack_one(rd, m.dt_proj);  // its bias is added inside the scan, in float32
      l.mamba.out_proj = pack_one(rd, m.out_proj, &m.out_proj_bias);
      l.mamba.conv_w = rd.read_f32(m.conv_weight);
      if (m.conv_bias.present()) l.mamba.conv_b = rd.read_f32(m.conv_bias);
      l.mamba.a = rd.read_f32(m.a_log);
      for (float& v : l.mamba.a) v = -std::exp(v);
      l.mamba.d = rd.read_f32(m.d);
      l.mamba.dt_bias = rd.read_f32(m.dt_proj_bias);
      l.mamba.dt_norm = rd.read_f32(m.dt_norm);
      l.mamba.b_norm = rd.read_f32(m.b_norm);
      l.mamba.c_norm = rd.read_f32(m.c_norm);
    }
    if (lp.moe) {
      l.moe_block.router = pack_one(rd, lp.router);
      l.moe_block.top_k = dims_.top_k;
      for (const MlpSources& e : lp.experts) l.moe_block.experts.push_back(load_mlp(rd, e, plan.experts_int8));
    } else {
      l.mlp = load_mlp(rd, lp.mlp, false);
    }
  }
}

std::unique_ptr<SequenceState> JambaModel::new_state() const {
  return std::make_unique<SequenceState>(dims_, is_attention_);
}

std::map<std::string, size_t> JambaModel::bytes_by_dtype() const {
  std::map<std::string, size_t> out;
  auto add = [&](const cpu::PackedWeight& w) {
    out[dtype_name(w.dtype)] += w.panels.nbytes();
    out["f32"] += w.scale.nbytes() + w.bias.nbytes();
  };
  auto addv = [&](const std::vector<float>& v) { out["f32"] += v.size() * sizeof(float); };
  auto add_mlp = [&](const cpu::GatedMlp& m) { add(m.gate_up); add(m.down); };
  add(embed_);
  if (!tied_) add(lm_head_);
  addv(final_norm_);
  for (const Layer& l : layers_) {
    addv(l.input_norm);
    addv(l.ff_norm);
    if (l.attention) {
      add(l.attn.qkv);
      add(l.attn.o);
    } else {
      const Mamba& m = l.mamba;
      add(m.in_proj); add(m.x_proj); add(m.dt_proj); add(m.out_proj);
      for (auto* v : {&m.conv_w, &m.conv_b, &m.a, &m.d, &m.dt_bias, &m.dt_norm, &m.b_norm, &m.c_norm}) addv(*v);
    }
    if (l.moe) {
      add(l.moe_block.router);
      for (auto& e : l.moe_block.experts) add_mlp(e);
    } else {
      add_mlp(l.mlp);
    }
  }
  return out;
}

void JambaModel::mamba_mixer(const Layer& layer, const std::vector<SequenceState*>& states, const std::vector<int64_t>& offsets,
                             size_t li, const float* x, float* out, MambaActs* keep) const {
  const Mamba& m = layer.mamba;
  const int64_t T = offsets.back(), Di = dims_.d_inner, N = dims_.d_state, R = dims_.dt_rank, H = dims_.hidden;
  const int64_t P = R + 2 * N;
  std::vector<float> xz(size_t(T * 2 * Di)), xc(size_t(T * Di)), p(size_t(T * P)), dt(size_t(T * Di)),
      y(size_t(T * Di));
  cpu::gemm(x, H, T, m.in_proj, xz.data(), 2 * Di);
  for (size_t s = 0; s < states.size(); ++s) {
    const int64_t o = offsets[s], n = offsets[s + 1] - o;
    cpu::causal_conv1d_silu(xz.data() + o * 2 * Di, 2 * Di, n, Di, m.conv_w.data(), dims_.d_conv,
                            m.conv_b.empty() ? nullptr : m.conv_b.data(), states[s]->layer(li).conv.data(),
                            xc.data() + o * Di, Di);
  }
  cpu::gemm(xc.data(), Di, T, m.x_proj, p.data(), P);
  if (keep) keep->p_raw = p;
  // dt, B and C each get their own RMSNorm (Jamba's addition to Mamba), in place in p.
  cpu::rmsnorm(p.data(), P, T, R, m.dt_norm.data(), dims_.eps, p.data(), P);
  cpu::rmsnorm(p.data() + R, P, T, N, m.b_norm.data(), dims_.eps, p.data() + R, P);
  cpu::rmsnorm(p.data() + R + N, P, T, N, m.c_norm.data(), dims_.eps, p.data() + R + N, P);
  cpu::gemm(p.data(), P, T, m.dt_proj, dt.data(), Di);

  cpu::ScanArgs a{};
  a.u = xc.data(); a.ldu = Di;
  a.dt = dt.data(); a.lddt = Di;
  a.b = p.data() + R; a.ldb = P;
  a.c = p.data() + R + N; a.ldc = P;
  a.z = xz.data() + Di; a.ldz = 2 * Di;
  a.a = m.a.data(); a.d_skip = m.d.data(); a.dt_bias = m.dt_bias.data();
  a.y = y.data(); a.ldy = Di;
  a.d_inner = Di; a.d_state = N;
  const bool all_single = T == int64_t(states.size());
  if (all_single && T > 1) {
    std::vector<float*> ssm;
    for (auto* st : states) ssm.push_back(st->layer(li).ssm.data());
    a.t_len = 1;
    cpu::selective_state_update(a, ssm.data(), T);
  } else {
    for (size_t s = 0; s < states.size(); ++s) {
      const int64_t o = offsets[s];
      cpu::ScanArgs as = a;
      as.u += o * Di; as.dt += o * Di; as.b += o * P; as.c += o * P; as.z += o * 2 * Di; as.y += o * Di;
      as.t_len = offsets[s + 1] - o;
      cpu::selective_scan(as, states[s]->layer(li).ssm.data());
    }
  }
  cpu::gemm(y.data(), Di, T, m.out_proj, out, H);
  if (keep) {
    keep->xz = std::move(xz);
    keep->u = std::move(xc);
    keep->p = std::move(p);
    keep->dt = std::move(dt);
  }
}

void JambaModel::attention_mixer(const Layer& layer, const std::vector<SequenceState*>& states, const std::vector<int64_t>& offsets,
                                 size_t li, const float* x, float* out, AttentionActs* keep) const {
  const int64_t T = offsets.back(), H = dims_.hidden, hd = dims_.head_dim;
  const int64_t qw = dims_.heads * hd, kvw = dims_.kv_heads * hd, w = qw + 2 * kvw;
  std::vector<float> qkv(size_t(T * w)), o(size_t(T * qw)), lse(keep ? size_t(T * dims_.heads) : 0);
  cpu::gemm(x, H, T, layer.attn.qkv, qkv.data(), w);
  for (size_t s = 0; s < states.size(); ++s) {
    const int64_t off = offsets[s], n = offsets[s + 1] - off;
    LayerState& ls = states[s]->layer(li);
    const int64_t past = int64_t(ls.k.size()) / kvw;
    if (ls.k.capacity() < size_t((past + n) * kvw)) {
      const size_t cap = std::max(size_t((past + n) * kvw), ls.k.capacity() * 2);
      ls.k.reserve(cap);
      ls.v.reserve(cap);
    }
    for (int64_t t = 0; t < n; ++t) {
      const float* row = qkv.data() + (off + t) * w;
      ls.k.insert(ls.k.end(), row + qw, row + qw + kvw);
      ls.v.insert(ls.v.end(), row + qw + kvw, row + w);
    }
    cpu::AttentionArgs a{};
    a.q = qkv.data() + off * w; a.ldq = w;
    a.k = ls.k.data(); a.ldk = kvw;
    a.v = ls.v.data(); a.ldv = kvw;
    a.out = o.data() + off * qw; a.ldo = qw;
    a.t_len = n; a.past = past;
    a.heads = dims_.heads; a.kv_heads = dims_.kv_heads; a.head_dim = hd;
    a.scale = float(1.0 / std::sqrt(double(hd)));
    if (keep) a.lse = lse.data() + off * dims_.heads;
    cpu::attention(a);
  }
  cpu::gemm(o.data(), qw, T, layer.attn.o, out, H);
  if (keep) {
    keep->qkv = std::move(qkv);
    keep->o = std::move(o);
    keep->lse = std::move(lse);
  }
}

void JambaModel::layer_forward(size_t li, const std::vector<SequenceState*>& states, const std::vector<int64_t>& offsets,
                               float* h, float* x, float* delta, std::vector<float>& scratch, float* router_logits, LayerActs* keep) const {
  const int64_t T = offsets.back(), H = dims_.hidden;
  const Layer& l = layers_[li];
  cpu::rmsnorm(h, H, T, H, l.input_norm.data(), dims_.eps, x, H);
  if (l.attention) attention_mixer(l, states, offsets, li, x, delta, keep ? &keep->attn : nullptr);
  else mamba_mixer(l, states, offsets, li, x, delta, keep ? &keep->mamba : nullptr);
  cpu::add_inplace(h, delta, T * H);
  if (keep) keep->hmid.assign(h, h + T * H);
  cpu::rmsnorm(h, H, T, H, l.ff_norm.data(), dims_.eps, x, H);
  if (l.moe) {
    cpu::moe_forward(l.moe_block, x, T, delta, router_logits);
  } else {
    const int64_t need = T * 3 * l.mlp.inner();
    if (int64_t(scratch.size()) < need) scratch.resize(size_t(need));
    cpu::gated_mlp(l.mlp, x, T, delta, scratch.data());
  }
  cpu::add_inplace(h, delta, T * H);
}

std::vector<float> JambaModel::embed(const std::vector<int32_t>& ids) const {
  const int64_t H = dims_.hidden;
  std::vector<float> out(ids.size() * size_t(H));
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= dims_.vocab)
      fail("invalid_argument", "token id " + std::to_string(ids[i]) + " is outside [0, " + std::to_string(dims_.vocab) + ")");
    embed_.read_row(ids[i], out.data() + int64_t(i) * H);
  }
  return out;
}

ForwardResult JambaModel::forward(const ForwardRequest& req) const {
  const int64_t H = dims_.hidden, V = dims_.vocab;
  for (const SampleSpec& s : req.sample)
    if (s.on) fail("invalid_argument", "sampling inside the forward pass is a CUDA backend feature");
  if (req.profile) fail("invalid_argument", "profile is a CUDA backend feature (on the CPU, npm run bench times the kernels)");
  if (!req.embeds.empty() && req.embeds.size() != req.states.size()) fail("invalid_argument", "embeds: one entry per sequence");
  auto embed_rows = [&](size_t s) -> int64_t { return req.embeds.empty() ? 0 : int64_t(req.embeds[s].size()) / H; };
  std::vector<int64_t> offsets{0};
  for (size_t s = 0; s < req.tokens.size(); ++s) {
    const auto& t = req.tokens[s];
    for (int32_t id : t)
      if (id < 0 || id >= V) fail("invalid_argument", "token id " + std::to_string(id) + " is outside [0, " + std::to_string(V) + ")");
    if (!req.embeds.empty() && req.embeds[s].size() % size_t(H) != 0)
      fail("invalid_argument", "embeds[" + std::to_string(s) + "] is not a whole number of rows of " + std::to_string(H));
    const int64_t n = embed_rows(s) + int64_t(t.size());
    if (n == 0 && req.logits == ForwardRequest::Logits::Last)
      fail("invalid_argument", "sequence " + std::to_string(s) + " has no tokens");
    offsets.push_back(offsets.back() + n);
  }
  const int64_t T = offsets.back();
  ForwardResult res;
  if (T == 0) return res;

  std::vector<float> h(size_t(T * H)), x(size_t(T * H)), delta(size_t(T * H));
  for (size_t s = 0; s < req.tokens.size(); ++s) {
    const int64_t e = embed_rows(s);
    if (e) std::memcpy(h.data() + offsets[s] * H, req.embeds[s].data(), sizeof(float) * size_t(e * H));
    for (size_t t = 0; t < req.tokens[s].size(); ++t)
      embed_.read_row(req.tokens[s][t], h.data() + (offsets[s] + e + int64_t(t)) * H);
  }
  if (req.capture) res.captured["embed"] = h;

  try {
    std::vector<float> scratch;
    for (size_t li = 0; li < layers_.size(); ++li) {
      check_abort(req);
      const std::string prefix = "layer" + std::to_string(li);
      std::vector<float> router(req.capture && layers_[li].moe ? size_t(T * dims_.experts) : 0);
      layer_forward(li, req.states, offsets, h.data(), x.data(), delta.data(), scratch, router.empty() ? nullptr : router.data());
      if (!router.empty()) res.captured[prefix + ".router_logits"] = std::move(router);
      if (req.capture) res.captured[prefix + ".out"] = h;
    }
    check_abort(req);
  } catch (...) {
    // A half-advanced state is worse than none: drop what these sequences had.
    for (auto* st : req.states) st->reset();
    throw;
  }
  for (size_t s = 0; s < req.states.size(); ++s) req.states[s]->advance(offsets[s + 1] - offsets[s]);

  cpu::rmsnorm(h.data(), H, T, H, final_norm_.data(), dims_.eps, x.data(), H);
  if (req.capture) res.captured["final_norm"] = x;
  const cpu::PackedWeight& head = tied_ ? embed_ : lm_head_;
  if (req.logits == ForwardRequest::Logits::All) {
    res.logits.resize(size_t(T * V));
    cpu::gemm(x.data(), H, T, head, res.logits.data(), V);
    if (req.hidden) res.hidden = std::move(x);
  } else if (req.logits == ForwardRequest::Logits::Last) {
    const int64_t S = int64_t(req.states.size());
    std::vector<float> last(size_t(S * H));
    for (int64_t s = 0; s < S; ++s) {
      std::memcpy(last.data() + s * H, x.data() + (offsets[s + 1] - 1) * H, sizeof(float) * size_t(H));
    }
    res.logits.resize(size_t(S * V));
    cpu::gemm(last.data(), H, S, head, res.logits.data(), V);
    if (req.hidden) res.hidden = std::move(last);
  }
  return res;
}

}  // namespace jamba
