// Training through the frozen model on the CPU (grad_request.h): the forward keeps one residual
// row per layer per token and nothing else; the backward recomputes each layer from its row,
// last layer first, and runs the inputs-only backward of every op (csrc/cpu/*_back). Sequence
// states are never touched: each example starts from a copy of its initial state.
#include <cmath>
#include <cstring>

#include "../core/error.h"
#include "../cpu/attention.h"
#include "../cpu/conv1d.h"
#include "../cpu/cross_entropy.h"
#include "../cpu/moe.h"
#include "../cpu/norm.h"
#include "../cpu/ssm_scan.h"
#include "jamba_model.h"

namespace jamba {

class CpuGradTape : public GradTape {
 public:
  explicit CpuGradTape(const JambaModel& m) : m_(m) {}
  GradResult backward(const BackwardRequest& req) override;

  // Fresh states holding layer li of each example's initial state (the mixers advance them).
  std::vector<std::unique_ptr<SequenceState>> working(size_t li) const {
    std::vector<std::unique_ptr<SequenceState>> out;
    for (auto& init : initial) {
      out.push_back(m_.new_state());
      if (init) out.back()->layer(li) = init->layer(li);
    }
    return out;
  }

  const JambaModel& m_;
  std::vector<int64_t> offsets{0};
  std::vector<std::shared_ptr<const SequenceState>> initial;
  std::vector<std::vector<float>> checkpoints;  // per layer run: its input residual, T × hidden
  std::vector<JambaModel::LayerActs> acts;       // with keep_activations: each layer's intermediates
  std::vector<std::unique_ptr<SequenceState>> work;  // with keep_activations: the states the forward advanced (K/V)
  std::vector<float> h_out;                      // the residual after the last layer run
  std::vector<float> d_final;                    // the loss's gradient at the final hidden states (T × hidden)
  size_t layers_run = 0;
  bool early_exit = false, used = false;

 private:
  void mamba_back(size_t li, const JambaModel::MambaActs& acts, const float* dout, float* dx, GradResult& res, bool want_state) const;
  void attention_back(size_t li, const JambaModel::AttentionActs& acts, const std::vector<std::unique_ptr<SequenceState>>& work,
                      const float* dout, float* dx, GradResult& res, bool want_state) const;
};

std::unique_ptr<GradTape> JambaModel::forward_for_grad(const GradRequest& req) const {
  const int64_t H = dims_.hidden, V = dims_.vocab;
  auto tape = std::make_unique<CpuGradTape>(*this);
  GradBatch batch = check_grad_request(req, dims_, layers_.size());
  tape->offsets = batch.offsets;
  for (const GradExample& ex : req.examples) tape->initial.push_back(ex.initial);
  const std::vector<int32_t>& trow = batch.target_rows;
  const std::vector<int32_t>& tid = batch.target_ids;
  const std::vector<float>& tw = batch.target_weights;
  const std::vector<size_t>& tex = batch.target_example;
  const int64_t T = tape->offsets.back();
  std::vector<float> h(size_t(T * H)), x(size_t(T * H)), delta(size_t(T * H)), scratch;
  for (size_t e = 0; e < req.examples.size(); ++e) {
    const GradExample& ex = req.examples[e];
    size_t next = 0;
    for (size_t r = 0; r < ex.ids.size(); ++r) {
      float* row = h.data() + (tape->offsets[e] + int64_t(r)) * H;
      if (ex.ids[r] >= 0) embed_.read_row(ex.ids[r], row);
      else std::memcpy(row, ex.embeds.data() + (next++) * size_t(H), sizeof(float) * size_t(H));
    }
  }
  // Working copies of the initial states: the forward advances them, the snapshots stay as they are.
  std::vector<std::unique_ptr<SequenceState>> work;
  std::vector<SequenceState*> states;
  for (auto& init : tape->initial) {
    work.push_back(new_state());
    if (init)
      for (size_t li = 0; li < layers_.size(); ++li) work.back()->layer(li) = init->layer(li);
    states.push_back(work.back().get());
  }
  tape->layers_run = req.stop_at_layer >= 0 ? size_t(req.stop_at_layer) : layers_.size();
  tape->early_exit = req.stop_at_layer >= 0;
  if (req.routing) tape->routing.resize(tape->layers_run);
  for (size_t li = 0; li < tape->layers_run; ++li) {
    check_grad_abort(req.abort);
    tape->checkpoints.push_back(h);
    const bool route = req.routing && layers_[li].moe;
    std::vector<float> router(route ? size_t(T * dims_.experts) : 0);
    if (req.keep_activations) tape->acts.emplace_back();
    layer_forward(li, states, tape->offsets, h.data(), x.data(), delta.data(), scratch, route ? router.data() : nullptr,
                  req.keep_activations ? &tape->acts.back() : nullptr);
    if (route) {
      const int64_t k = dims_.top_k;
      std::vector<int32_t> idx(size_t(T * k));
      std::vector<float> weight(idx.size());
      cpu::router_topk(router.data(), T, dims_.experts, k, idx.data(), weight.data());
      for (size_t e = 0; e + 1 < tape->offsets.size(); ++e)
        tape->routing[li].emplace_back(idx.begin() + tape->offsets[e] * k, idx.begin() + tape->offsets[e + 1] * k);
    }
  }
  check_grad_abort(req.abort);
  const size_t E = req.examples.size();
  auto per_example = [&](const float* rows, int64_t width) {
    std::vector<std::vector<float>> out(E);
    for (size_t e = 0; e < E; ++e) out[e].assign(rows + tape->offsets[e] * width, rows + tape->offsets[e + 1] * width);
    return out;
  };
  tape->example_loss.assign(E, 0.0);
  if (tape->early_exit) {
    if (req.hidden) tape->hidden = per_example(h.data(), H);
  } else {
    cpu::rmsnorm(h.data(), H, T, H, final_norm_.data(), dims_.eps, x.data(), H);
    const cpu::PackedWeight& head = tied_ ? embed_ : lm_head_;
    if (req.hidden) tape->hidden = per_example(x.data(), H);
    if (req.logits) {
      std::vector<float> logits(size_t(T * V));
      cpu::gemm(x.data(), H, T, head, logits.data(), V);
      tape->logits = per_example(logits.data(), V);
    }
    if (!trow.empty()) {
      const int64_t R = int64_t(trow.size());
      std::vector<float> xr(size_t(R * H)), dxr(size_t(R * H));
      for (int64_t i = 0; i < R; ++i) std::memcpy(xr.data() + i * H, x.data() + int64_t(trow[size_t(i)]) * H, sizeof(float) * size_t(H));
      std::vector<double> row_loss(static_cast<size_t>(R));
      tape->loss = cpu::cross_entropy_head(head, xr.data(), H, R, tid.data(), tw.data(), dxr.data(), H, row_loss.data());
      for (int64_t i = 0; i < R; ++i) tape->example_loss[tex[size_t(i)]] += row_loss[size_t(i)];
      tape->d_final.assign(size_t(T * H), 0.f);
      for (int64_t i = 0; i < R; ++i) {
        float* d = tape->d_final.data() + int64_t(trow[size_t(i)]) * H;
        for (int64_t c = 0; c < H; ++c) d[c] += dxr[size_t(i * H + c)];
      }
    }
  }
  tape->h_out = std::move(h);
  if (req.keep_activations) tape->work = std::move(work);
  return tape;
}

GradResult CpuGradTape::backward(const BackwardRequest& req) {
  if (used) fail("invalid_argument", "a tape runs backward once");
  used = true;
  const ModelDims& d = m_.dims_;
  const int64_t H = d.hidden, T = offsets.back();
  const size_t E = initial.size();
  if (!req.d_hidden.empty() && req.d_hidden.size() != E) fail("invalid_argument", "cotangents: one entry per example (or none)");
  // The gradient at the output this tape returned: the early exit's residual, or the final hidden states.
  std::vector<float> dout(d_final.empty() ? size_t(T * H) : 0);
  if (!d_final.empty()) dout = std::move(d_final);
  for (size_t e = 0; e < req.d_hidden.size(); ++e) {
    const auto& c = req.d_hidden[e];
    if (c.empty()) continue;
    if (int64_t(c.size()) != (offsets[e + 1] - offsets[e]) * H) fail("invalid_argument", "cotangents[" + std::to_string(e) + "] must be its rows × hidden floats");
    for (size_t i = 0; i < c.size(); ++i) dout[size_t(offsets[e] * H) + i] += c[i];
  }
  std::vector<float> dh(size_t(T * H));
  if (early_exit) dh = std::move(dout);
  else cpu::rmsnorm_back(h_out.data(), H, T, H, m_.final_norm_.data(), d.eps, dout.data(), H, dh.data(), H);

  GradResult res;
  res.d_initial.assign(E, std::vector<LayerState>(req.initial_state ? m_.layers_.size() : 0));
  std::vector<float> x1(size_t(T * H)), x2(size_t(T * H)), hmid(size_t(T * H)), dx(size_t(T * H)), dmid(size_t(T * H)),
      scratch;
  for (size_t li = layers_run; li-- > 0;) {
    check_grad_abort(req.abort);
    const JambaModel::Layer& l = m_.layers_[li];
    const float* hin = checkpoints[li].data();
    // The layer's intermediates: kept by the forward, or the layer again.
    JambaModel::LayerActs redo;
    std::vector<std::unique_ptr<SequenceState>> fresh;
    if (acts.empty()) {
      cpu::rmsnorm(hin, H, T, H, l.input_norm.data(), d.eps, x1.data(), H);
      fresh = working(li);
      std::vector<SequenceState*> states;
      for (auto& w : fresh) states.push_back(w.get());
      if (l.attention) m_.attention_mixer(l, states, offsets, li, x1.data(), hmid.data(), &redo.attn);
      else m_.mamba_mixer(l, states, offsets, li, x1.data(), hmid.data(), &redo.mamba);
      for (int64_t i = 0; i < T * H; ++i) hmid[size_t(i)] += hin[i];
    } else {
      hmid = std::move(acts[li].hmid);
    }
    const JambaModel::LayerActs& la = acts.empty() ? redo : acts[li];
    const auto& work_states = acts.empty() ? fresh : work;
    cpu::rmsnorm(hmid.data(), H, T, H, l.ff_norm.data(), d.eps, x2.data(), H);
    // Feed-forward, then its norm; the residual passes dh through.
    if (l.moe) {
      cpu::moe_back(l.moe_block, x2.data(), T, dh.data(), dx.data());
    } else {
      scratch.resize(size_t(T * 3 * l.mlp.inner()));
      cpu::gated_mlp_back(l.mlp, x2.data(), T, dh.data(), dx.data(), scratch.data());
    }
    dmid = dh;
    cpu::rmsnorm_back(hmid.data(), H, T, H, l.ff_norm.data(), d.eps, dx.data(), H, dmid.data(), H, true);
    // The mixer, then its norm.
    if (l.attention) attention_back(li, la.attn, work_states, dmid.data(), dx.data(), res, req.initial_state);
    else mamba_back(li, la.mamba, dmid.data(), dx.data(), res, req.initial_state);
    dh = dmid;
    cpu::rmsnorm_back(hin, H, T, H, l.input_norm.data(), d.eps, dx.data(), H, dh.data(), H, true);
    checkpoints[li] = std::vector<float>();
    if (!acts.empty()) acts[li] = JambaModel::LayerActs();
  }
  res.d_rows.resize(E);
  for (size_t e = 0; e < E; ++e) res.d_rows[e].assign(dh.begin() + offsets[e] * H, dh.begin() + offsets[e + 1] * H);
  return res;
}

void CpuGradTape::mamba_back(size_t li, const JambaModel::MambaActs& acts, const float* dout, float* dx, GradResult& res, bool want_state) const {
  const ModelDims& d = m_.dims_;
  const JambaModel::Mamba& m = m_.layers_[li].mamba;
  const int64_t T = offsets.back(), H = d.hidden, Di = d.d_inner, N = d.d_state, R = d.dt_rank, P = R + 2 * N, K = d.d_conv;
  std::vector<float> dy(size_t(T * Di)), dxz(size_t(T * 2 * Di)), du(size_t(T * Di)), dv(size_t(T * Di)), db(size_t(T * N)),
      dc(size_t(T * N)), ddtn(size_t(T * R)), dp(size_t(T * P)), zeros;
  cpu::gemm_dx(dout, H, T, m.out_proj, dy.data(), Di);
  for (size_t s = 0; s < initial.size(); ++s) {
    const int64_t o = offsets[s], n = offsets[s + 1] - o;
    cpu::ScanArgs a{};
    a.u = acts.u.data() + o * Di; a.ldu = Di;
    a.dt = acts.dt.data() + o * Di; a.lddt = Di;
    a.b = acts.p.data() + o * P + R; a.ldb = P;
    a.c = acts.p.data() + o * P + R + N; a.ldc = P;
    a.z = acts.xz.data() + o * 2 * Di + Di; a.ldz = 2 * Di;
    a.a = m.a.data(); a.d_skip = m.d.data(); a.dt_bias = m.dt_bias.data();
    a.t_len = n; a.d_inner = Di; a.d_state = N;
    cpu::ScanGrads g{};
    g.dy = dy.data() + o * Di; g.lddy = Di;
    g.du = du.data() + o * Di; g.lddu = Di;
    g.ddt = dv.data() + o * Di; g.ldddt = Di;
    g.dz = dxz.data() + o * 2 * Di + Di; g.lddz = 2 * Di;
    g.db = db.data() + o * N; g.lddb = N;
    g.dc = dc.data() + o * N; g.lddc = N;
    if (want_state) {
      res.d_initial[s][li].ssm.assign(size_t(Di * N), 0.f);
      g.dstate = res.d_initial[s][li].ssm.data();
    }
    if (zeros.empty()) zeros.assign(size_t(Di * std::max<int64_t>(N, K - 1)), 0.f);
    const float* ssm0 = initial[s] ? initial[s]->layer(li).ssm.data() : zeros.data();
    cpu::selective_scan_back(a, ssm0, g);
  }
  // Through dt_proj and Jamba's dt/B/C norms, back to x_proj's input.
  cpu::gemm_dx(dv.data(), Di, T, m.dt_proj, ddtn.data(), R);
  cpu::rmsnorm_back(acts.p_raw.data(), P, T, R, m.dt_norm.data(), d.eps, ddtn.data(), R, dp.data(), P);
  cpu::rmsnorm_back(acts.p_raw.data() + R, P, T, N, m.b_norm.data(), d.eps, db.data(), N, dp.data() + R, P);
  cpu::rmsnorm_back(acts.p_raw.data() + R + N, P, T, N, m.c_norm.data(), d.eps, dc.data(), N, dp.data() + R + N, P);
  cpu::gemm_dx(dp.data(), P, T, m.x_proj, du.data(), Di, true);
  for (size_t s = 0; s < initial.size(); ++s) {
    const int64_t o = offsets[s], n = offsets[s + 1] - o;
    float* dstate = nullptr;
    if (want_state) {
      res.d_initial[s][li].conv.assign(size_t(Di * (K - 1)), 0.f);
      dstate = res.d_initial[s][li].conv.data();
    }
    const float* conv0 = initial[s] ? initial[s]->layer(li).conv.data() : zeros.data();
    cpu::causal_conv1d_silu_back(acts.xz.data() + o * 2 * Di, 2 * Di, n, Di, m.conv_w.data(), K, m.conv_b.empty() ? nullptr : m.conv_b.data(),
                                 conv0, du.data() + o * Di, Di, dxz.data() + o * 2 * Di, 2 * Di, dstate);
  }
  cpu::gemm_dx(dxz.data(), 2 * Di, T, m.in_proj, dx, H);
}

void CpuGradTape::attention_back(size_t li, const JambaModel::AttentionActs& acts, const std::vector<std::unique_ptr<SequenceState>>& work,
                                 const float* dout, float* dx, GradResult& res, bool want_state) const {
  const ModelDims& d = m_.dims_;
  const JambaModel::Attention& at = m_.layers_[li].attn;
  const int64_t T = offsets.back(), H = d.hidden, hd = d.head_dim, qw = d.heads * hd, kvw = d.kv_heads * hd, w = qw + 2 * kvw;
  std::vector<float> dO(size_t(T * qw)), dqkv(size_t(T * w));
  cpu::gemm_dx(dout, H, T, at.o, dO.data(), qw);
  for (size_t s = 0; s < initial.size(); ++s) {
    const int64_t o = offsets[s], n = offsets[s + 1] - o;
    const LayerState& ls = work[s]->layer(li);  // after the mixer: the prefix's keys and these rows'
    const int64_t past = int64_t(ls.k.size()) / kvw - n;
    std::vector<float> dk(size_t((past + n) * kvw)), dv(dk.size());
    cpu::AttentionArgs a{};
    a.q = acts.qkv.data() + o * w; a.ldq = w;
    a.k = ls.k.data(); a.ldk = kvw;
    a.v = ls.v.data(); a.ldv = kvw;
    a.t_len = n; a.past = past;
    a.heads = d.heads; a.kv_heads = d.kv_heads; a.head_dim = hd;
    a.scale = float(1.0 / std::sqrt(double(hd)));
    cpu::AttentionGrads g{};
    g.out = acts.o.data() + o * qw; g.ldout = qw;
    g.lse = acts.lse.data() + o * d.heads;
    g.dout = dO.data() + o * qw; g.lddout = qw;
    g.dq = dqkv.data() + o * w; g.lddq = w;
    g.dk = dk.data(); g.lddk = kvw;
    g.dv = dv.data(); g.lddv = kvw;
    cpu::attention_back(a, g);
    for (int64_t t = 0; t < n; ++t) {
      std::memcpy(dqkv.data() + (o + t) * w + qw, dk.data() + (past + t) * kvw, sizeof(float) * size_t(kvw));
      std::memcpy(dqkv.data() + (o + t) * w + qw + kvw, dv.data() + (past + t) * kvw, sizeof(float) * size_t(kvw));
    }
    if (want_state) {
      res.d_initial[s][li].k.assign(dk.begin(), dk.begin() + past * kvw);
      res.d_initial[s][li].v.assign(dv.begin(), dv.begin() + past * kvw);
    }
  }
  cpu::gemm_dx(dqkv.data(), w, T, at.qkv, dx, H);
}

}  // namespace jamba
