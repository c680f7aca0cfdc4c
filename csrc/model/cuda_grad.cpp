// Training through the frozen model on CUDA (grad_request.h), the plan of the CPU backend's
// jamba_grad.cpp on the GPU: the forward keeps one float32 residual row per layer per token; the
// backward recomputes each layer from its row with the forward's own layer code (so the
// recomputed activations are the forward's, bit for bit) and runs the inputs-only backward of
// every op (csrc/cuda/*: grouped_gemm_dx over bf16 and int8 weights, rmsnorm_back,
// causal_conv1d_silu_back, selective_scan_back, attention_back, the MoE and cross-entropy
// pieces). Sequence states are never touched: a tape has pools of its own, one slot per example,
// filled from each example's initial state, and every Mamba layer's initial states are kept to
// restart its recomputation.
//
// Memory (docs/training.md has the arithmetic at Jamba-1.5-Mini's shapes): the weights, the
// checkpoints (layers × T × hidden float32), one layer's activations and their gradients; the
// feed-forward, per token, runs kFfnChunk tokens at a time, so its expert activations (the
// largest of any layer) take a chunk's memory, not T's.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "../core/error.h"
#include "../cuda/kernels.h"
#include "cuda_pass.h"

namespace jamba {

using DT = cuda::DType;

namespace {

constexpr int64_t kFfnChunk = 512;  // tokens per feed-forward pass in training

// Buffers carved from one allocation, 256-byte aligned.
class Arena {
 public:
  template <typename T> void want(T** ptr, int64_t count) { plan_.push_back({reinterpret_cast<void**>(ptr), size_t(std::max<int64_t>(count, 1)) * sizeof(T)}); }
  void want_bytes(void** ptr, size_t bytes) { plan_.push_back({ptr, std::max<size_t>(bytes, 1)}); }
  void allocate() {
    size_t total = 0;
    for (auto& [ptr, bytes] : plan_) total += (bytes + 255) / 256 * 256;
    buf_ = DeviceBuffer(total);
    size_t at = 0;
    for (auto& [ptr, bytes] : plan_) {
      *ptr = static_cast<char*>(buf_.p) + at;
      at += (bytes + 255) / 256 * 256;
    }
    plan_.clear();
  }
  size_t bytes() const { return buf_.bytes; }

 private:
  std::vector<std::pair<void**, size_t>> plan_;
  DeviceBuffer buf_;
};

}  // namespace

class CudaGradTape : public GradTape {
 public:
  explicit CudaGradTape(const CudaJambaModel& m) : m_(m) {}
  GradResult backward(const BackwardRequest& req) override;

  void forward(const GradRequest& req, const GradBatch& batch);

 private:
  using Layer = CudaJambaModel::Layer;
  using Rows = CudaJambaModel::Rows;

  cudaStream_t stream() const { return as_stream(m_.stream_); }
  void copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) const {
    check(cudaMemcpyAsync(dst, src, bytes, kind, stream()), "cudaMemcpyAsync");
  }
  // dst (bf16) = src (float32), n values: the operand of a gradient product.
  void bf16(const float* src, int64_t n, void* dst) const { cuda::to_bf16(src, n, dst, stream()); }
  void restart_states(size_t li) const;
  // The pass's rows [t0, t0 + kFfnChunk) for the feed-forward.
  CudaJambaModel::Workspace ffn_chunk(int64_t t0) const {
    const int64_t n = std::min(kFfnChunk, ws.T - t0);
    return ws.rows(t0, n, m_.dims_.hidden, chunk_off + (n == std::min(kFfnChunk, ws.T) ? 0 : 2));
  }
  void ffn_back(const Layer& l, CudaJambaModel::Workspace& c, const float* dy, float* dx);
  void mamba_back(const Layer& l, size_t li, const float* dy, float* dx, bool want_state);
  void attention_back(const Layer& l, size_t li, const float* dy, float* dx, bool want_state);

  const CudaJambaModel& m_;
  std::vector<int64_t> offsets, past;           // per example: its rows in the batch, its prefix
  std::vector<size_t> kv_at;                    // per example: its first position in the K/V gradients
  size_t kv_total = 0;                          // positions of every example, prefix and rows
  size_t layers_run = 0;
  bool early_exit = false, used = false;
  std::shared_ptr<CudaJambaModel::Pools> pools;  // one slot per example
  std::vector<DeviceBuffer> init_conv, init_ssm;  // per Mamba layer: every example's initial states

  Arena arena;
  CudaJambaModel::Workspace ws;
  float *ckpt = nullptr, *d_final = nullptr;  // the output residual stays in ws.h
  int32_t* chunk_off = nullptr;                // {0, kFfnChunk or T, 0, the last chunk's rows}
  // Backward buffers.
  float *hmid, *dh, *dmid, *dx;
  void* gbf;                                   // bf16 operand of a gradient product
  float *dxz, *du, *ddt, *dp, *ddtn, *dbc;       // Mamba
  void* scan_ws;
  float *dO, *dqkv, *lse, *delta;              // attention
  float *eo, *dact, *dxg, *dweight;            // feed-forward
  void *dyg, *dgu, *dlogit;
  int32_t* iota;                               // 0 … T − 1
  // Input gradients of the initial states, per layer: [examples, …] Mamba, [Σ past + rows, kvw] K/V.
  std::vector<DeviceBuffer> d_conv, d_ssm, d_k, d_v;
};

std::unique_ptr<GradTape> CudaJambaModel::forward_for_grad(const GradRequest& req) const {
  const GradBatch batch = check_grad_request(req, dims_, layers_.size());
  auto tape = std::make_unique<CudaGradTape>(*this);
  std::lock_guard<std::mutex> lk(mu_);
  tape->forward(req, batch);
  return tape;
}

void CudaGradTape::forward(const GradRequest& req, const GradBatch& batch) {
  const ModelDims& d = m_.dims_;
  const int64_t H = d.hidden, V = d.vocab, T = batch.offsets.back(), Di = d.d_inner, N = d.d_state, P = d.dt_rank + 2 * d.d_state;
  const int64_t W = (d.heads + 2 * d.kv_heads) * d.head_dim, qw = d.heads * d.head_dim;
  const int64_t E = int64_t(req.examples.size()), k = std::max<int64_t>(d.top_k, 1);
  const int64_t R = T * k, I = m_.max_inner(), Ex = std::max<int64_t>(d.experts, 1);
  cudaStream_t s = stream();
  offsets = batch.offsets;
  layers_run = req.stop_at_layer >= 0 ? size_t(req.stop_at_layer) : m_.layers_.size();
  early_exit = req.stop_at_layer >= 0;

  // Pools of the tape's own, one slot per example, from each initial state.
  int64_t context = 1, longest = 0;
  for (int64_t e = 0; e < E; ++e) {
    const auto& init = req.examples[size_t(e)].initial;
    past.push_back(init ? init->position() : 0);
    longest = std::max(longest, offsets[size_t(e + 1)] - offsets[size_t(e)]);
    context = std::max(context, past.back() + offsets[size_t(e + 1)] - offsets[size_t(e)]);
  }
  for (int64_t e = 0; e < E; ++e) {
    kv_at.push_back(kv_total);
    kv_total += size_t(past[size_t(e)] + offsets[size_t(e + 1)] - offsets[size_t(e)]);
  }
  pools = m_.make_pools(E, context);
  for (int64_t e = 0; e < E; ++e) {
    if (const auto& init = req.examples[size_t(e)].initial) pools->push(int32_t(e), *init);
    else pools->zero(int32_t(e));
  }
  pools->wait("initial states");
  init_conv.resize(m_.layers_.size());
  init_ssm.resize(m_.layers_.size());
  for (size_t li = 0; li < m_.layers_.size(); ++li) {
    if (m_.is_attention_[li]) continue;
    init_conv[li] = DeviceBuffer(pools->conv[li].bytes);
    init_ssm[li] = DeviceBuffer(pools->ssm[li].bytes);
    copy(init_conv[li].p, pools->conv[li].p, pools->conv[li].bytes, cudaMemcpyDeviceToDevice);
    copy(init_ssm[li].p, pools->ssm[li].p, pools->ssm[li].bytes, cudaMemcpyDeviceToDevice);
  }

  // The pass's workspace (the forward's buffers), the tape's, and the backward's, in one arena.
  ws.T = T;
  ws.S = E;
  ws.longest = longest;
  ws.decode = false;
  ws.offsets = offsets;
  ws.pools = pools.get();
  for (int64_t e = 0; e < E; ++e) {
    ws.slot.push_back(int32_t(e));
    ws.past.push_back(int32_t(past[size_t(e)]));
  }
  m_.carve(ws, std::min(T, kFfnChunk), [&](void** p, size_t bytes) { arena.want_bytes(p, bytes); });
  arena.want(&ws.d_slot, E);
  arena.want(&ws.d_past, E);
  arena.want(&ws.d_tokoff, E + 1);
  arena.want(&ws.d_off_all, 2);
  arena.want(&ckpt, int64_t(layers_run) * T * H);
  arena.want(&chunk_off, 4);
  arena.want(&d_final, T * H);
  for (float** b : {&hmid, &dh, &dmid, &dx}) arena.want(b, T * H);
  arena.want_bytes(&gbf, size_t(T * std::max({H, 2 * Di, W, P, Ex})) * 2);
  arena.want(&dxz, T * 2 * Di);
  arena.want(&du, T * Di);
  arena.want(&ddt, T * Di);
  arena.want(&dp, T * P);
  arena.want(&ddtn, T * d.dt_rank);
  arena.want(&dbc, T * 2 * N);
  arena.want_bytes(&scan_ws, Di ? cuda::selective_scan_back_workspace(longest, Di, std::max<int64_t>(N, 1)) : 1);
  arena.want(&dO, T * qw);
  arena.want(&dqkv, T * W);
  arena.want(&lse, T * d.heads);
  arena.want(&delta, T * d.heads);
  const int64_t Rc = std::min(T, kFfnChunk) * k;  // a chunk's expert rows
  arena.want(&eo, Rc * H);
  arena.want(&dact, Rc * I);
  arena.want(&dxg, Rc * H);
  arena.want(&dweight, Rc);
  arena.want_bytes(&dyg, size_t(Rc * H) * 2);
  arena.want_bytes(&dgu, size_t(Rc * 2 * I) * 2);
  arena.want_bytes(&dlogit, size_t(std::min(T, kFfnChunk) * Ex) * 2);
  arena.want(&iota, T);
  // The cross-entropy head, a chunk of target rows at a time.
  const int64_t targets = int64_t(batch.target_rows.size());
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(std::max(targets, T), std::max<int64_t>(1, (int64_t(128) << 20) / (V * 6))));
  // Offsets {0, rows} of each chunk's product: the logits' chunks of T rows, then the targets'.
  const int64_t row_chunks = (T + chunk - 1) / chunk, target_chunks = (targets + chunk - 1) / chunk;
  std::vector<int32_t> head_off;
  for (int64_t r0 = 0; r0 < T; r0 += chunk) head_off.insert(head_off.end(), {0, int32_t(std::min(chunk, T - r0))});
  for (int64_t r0 = 0; r0 < targets; r0 += chunk) head_off.insert(head_off.end(), {0, int32_t(std::min(chunk, targets - r0))});
  int32_t *trow, *tid, *hoff;
  float *tw, *dxr, *tloss, *head_logits;
  void *xrb, *dlog;
  arena.want(&trow, targets);
  arena.want(&tid, targets);
  arena.want(&tw, targets);
  arena.want(&tloss, targets);
  arena.want_bytes(&xrb, size_t(std::max<int64_t>(targets, 1) * H) * 2);
  arena.want(&dxr, chunk * H);
  arena.want(&head_logits, chunk * V);
  arena.want_bytes(&dlog, size_t(chunk * V) * 2);
  arena.want(&hoff, 2 * (row_chunks + target_chunks));
  arena.allocate();

  const auto put = [&](void* dst, const void* src, size_t bytes) { copy(dst, src, bytes, cudaMemcpyHostToDevice); };
  std::vector<int32_t> slots(ws.slot), pasts(ws.past), tokoff(offsets.begin(), offsets.end()), off_all{0, int32_t(T)}, ids_all;
  std::vector<int32_t> seq(static_cast<size_t>(T));
  std::iota(seq.begin(), seq.end(), 0);
  put(ws.d_slot, slots.data(), slots.size() * 4);
  put(ws.d_past, pasts.data(), pasts.size() * 4);
  put(ws.d_tokoff, tokoff.data(), tokoff.size() * 4);
  put(ws.d_off_all, off_all.data(), 8);
  put(iota, seq.data(), seq.size() * 4);
  put(hoff, head_off.data(), head_off.size() * 4);
  const int32_t ffn_off[4] = {0, int32_t(std::min(T, kFfnChunk)), 0, int32_t(T % kFfnChunk)};
  put(chunk_off, ffn_off, sizeof ffn_off);
  ws.all = Rows{1, ws.d_off_all, nullptr, T, T, false};

  // The rows: embedding rows for tokens, the given vectors for the rest.
  for (const GradExample& ex : req.examples)
    for (int32_t id : ex.ids) ids_all.push_back(id < 0 ? 0 : id);
  int32_t* d_ids = reinterpret_cast<int32_t*>(dx);  // free until the backward
  put(d_ids, ids_all.data(), ids_all.size() * 4);
  cuda::embed_rows(m_.embed_.w.p, DT::BF16, H, d_ids, T, ws.h, s);
  for (int64_t e = 0; e < E; ++e) {
    const GradExample& ex = req.examples[size_t(e)];
    size_t next = 0;
    for (size_t r = 0; r < ex.ids.size(); ++r)
      if (ex.ids[r] < 0) put(ws.h + (offsets[size_t(e)] + int64_t(r)) * H, ex.embeds.data() + (next++) * size_t(H), size_t(H) * 4);
  }

  // The layers, each input row kept.
  std::vector<std::vector<int32_t>> routes(layers_run);
  if (req.routing) routing.resize(layers_run);
  ws.has_delta = false;
  for (size_t li = 0; li < layers_run; ++li) {
    check_grad_abort(req.abort);
    const Layer& l = m_.layers_[li];
    cuda::rmsnorm_residual(ws.h, H, ws.has_delta ? ws.delta : nullptr, H, DT::BF16, T, H, l.input_norm.as<float>(), d.eps, ws.x, H, DT::BF16, s);
    copy(ckpt + int64_t(li) * T * H, ws.h, size_t(T * H) * 4, cudaMemcpyDeviceToDevice);
    if (l.attention) m_.attention(l, li, ws);
    else m_.mamba(l, li, ws);
    cuda::rmsnorm_residual(ws.h, H, ws.delta, H, DT::BF16, T, H, l.ff_norm.as<float>(), d.eps, ws.x, H, DT::BF16, s);
    if (req.routing && l.moe) routes[li].resize(size_t(R));
    for (int64_t t0 = 0; t0 < T; t0 += kFfnChunk) {
      CudaJambaModel::Workspace c = ffn_chunk(t0);
      m_.feed_forward(l, li, c);
      ws.has_delta = c.has_delta;
      // (The next chunk's routing overwrites c.idx after this copy, in stream order.)
      if (req.routing && l.moe) copy(routes[li].data() + t0 * k, c.idx, size_t(c.T * k) * 4, cudaMemcpyDeviceToHost);
    }
  }
  // The output: the residual stream (an early exit; it stays in ws.h for the backward) or the
  // final norm's, xf (in hmid, free until the backward).
  float* xf = hmid;
  cuda::rmsnorm_residual(ws.h, H, ws.has_delta ? ws.delta : nullptr, H, DT::BF16, T, H, m_.final_norm_.as<float>(), d.eps, xf, H, DT::F32, s);
  const CudaJambaModel::Mat& head = m_.tied_ ? m_.embed_ : m_.lm_head_;
  std::vector<float> host_hidden, host_logits, host_loss(static_cast<size_t>(targets));
  if (req.hidden) {
    host_hidden.resize(size_t(T * H));
    copy(host_hidden.data(), early_exit ? ws.h : xf, host_hidden.size() * 4, cudaMemcpyDeviceToHost);
  }
  // Logits of every row (on request) and the loss, `chunk` rows per product.
  auto head_rows = [&](const void* x_bf16, int64_t rows, const int32_t* off) {
    m_.gemm(x_bf16, H, head, Rows{1, off, nullptr, rows, rows, false}, nullptr, head_logits, V, true);
  };
  void* xb = ws.x;  // the final hidden states in bf16 [T, H], the head's operand (ws.x is free after the layers)
  if (!early_exit) bf16(xf, T * H, xb);
  if (req.logits && !early_exit) {
    host_logits.resize(size_t(T * V));
    for (int64_t r0 = 0; r0 < T; r0 += chunk) {
      const int64_t rows = std::min(chunk, T - r0);
      head_rows(static_cast<uint16_t*>(xb) + r0 * H, rows, hoff + 2 * (r0 / chunk));
      copy(host_logits.data() + r0 * V, head_logits, size_t(rows * V) * 4, cudaMemcpyDeviceToHost);
    }
  }
  check(cudaMemsetAsync(d_final, 0, size_t(T * H) * 4, s), "cudaMemsetAsync");
  if (targets && !early_exit) {
    put(trow, batch.target_rows.data(), size_t(targets) * 4);
    put(tid, batch.target_ids.data(), size_t(targets) * 4);
    put(tw, batch.target_weights.data(), size_t(targets) * 4);
    cuda::gather_rows(xb, H, DT::BF16, trow, targets, H, xrb, H, s);
    for (int64_t r0 = 0; r0 < targets; r0 += chunk) {
      const int64_t rows = std::min(chunk, targets - r0);
      const int32_t* off = hoff + 2 * (row_chunks + r0 / chunk);
      head_rows(static_cast<uint16_t*>(xrb) + r0 * H, rows, off);
      cuda::cross_entropy_rows(head_logits, rows, V, tid + r0, tw + r0, tloss + r0, dlog, s);
      m_.gemm_dx(dlog, V, head, Rows{1, off, nullptr, rows, rows, false}, nullptr, dxr, H, false);
      cuda::scatter_add_rows(dxr, rows, H, trow + r0, d_final, s);  // targets in order: a repeated row sums alike
    }
    copy(host_loss.data(), tloss, size_t(targets) * 4, cudaMemcpyDeviceToHost);
  }
  check(cudaStreamSynchronize(s), "forwardForGrad");

  const size_t nE = size_t(E);
  auto per_example = [&](const std::vector<float>& rows, int64_t width) {
    std::vector<std::vector<float>> out(nE);
    for (size_t e = 0; e < nE; ++e) out[e].assign(rows.begin() + offsets[e] * width, rows.begin() + offsets[e + 1] * width);
    return out;
  };
  if (req.hidden) hidden = per_example(host_hidden, H);
  if (!host_logits.empty()) logits = per_example(host_logits, V);
  example_loss.assign(nE, 0.0);
  loss = 0;
  for (int64_t i = 0; i < targets; ++i) {
    loss += double(host_loss[size_t(i)]);
    example_loss[batch.target_example[size_t(i)]] += double(host_loss[size_t(i)]);
  }
  if (req.routing)
    for (size_t li = 0; li < layers_run; ++li) {
      if (routes[li].empty()) continue;
      for (size_t e = 0; e < nE; ++e)
        routing[li].emplace_back(routes[li].begin() + offsets[e] * k, routes[li].begin() + offsets[e + 1] * k);
    }
}

// A Mamba layer's states back to the examples' initial ones, before its recomputation.
void CudaGradTape::restart_states(size_t li) const {
  copy(pools->conv[li].p, init_conv[li].p, init_conv[li].bytes, cudaMemcpyDeviceToDevice);
  copy(pools->ssm[li].p, init_ssm[li].p, init_ssm[li].bytes, cudaMemcpyDeviceToDevice);
}

GradResult CudaGradTape::backward(const BackwardRequest& req) {
  std::lock_guard<std::mutex> lk(m_.mu_);
  if (used) fail("invalid_argument", "a tape runs backward once");
  used = true;
  const ModelDims& d = m_.dims_;
  const int64_t H = d.hidden, T = offsets.back();
  const size_t E = offsets.size() - 1;
  if (!req.d_hidden.empty() && req.d_hidden.size() != E) fail("invalid_argument", "cotangents: one entry per example (or none)");
  for (size_t e = 0; e < req.d_hidden.size(); ++e)
    if (!req.d_hidden[e].empty() && int64_t(req.d_hidden[e].size()) != (offsets[e + 1] - offsets[e]) * H)
      fail("invalid_argument", "cotangents[" + std::to_string(e) + "] must be its rows × hidden floats");
  cudaStream_t s = stream();
  // With a profile, an event after each op family (the recomputed forward ops keep their names).
  std::optional<OpTimer> timer;
  if (req.profile) ws.timer = &timer.emplace(s);
  // The gradient at what the tape returned: the loss's, plus the caller's cotangents.
  if (std::any_of(req.d_hidden.begin(), req.d_hidden.end(), [](const std::vector<float>& c) { return !c.empty(); })) {
    check(cudaMemsetAsync(dx, 0, size_t(T * H) * 4, s), "cudaMemsetAsync");
    for (size_t e = 0; e < req.d_hidden.size(); ++e)
      if (!req.d_hidden[e].empty()) copy(dx + offsets[e] * H, req.d_hidden[e].data(), req.d_hidden[e].size() * 4, cudaMemcpyHostToDevice);
    cuda::scatter_add_rows(dx, T, H, iota, d_final, s);  // rows onto themselves: an elementwise sum
  }
  if (early_exit) copy(dh, d_final, size_t(T * H) * 4, cudaMemcpyDeviceToDevice);
  else cuda::rmsnorm_back(ws.h, H, T, H, m_.final_norm_.as<float>(), d.eps, d_final, H, dh, H, false, s);
  ws.mark("backward: RMSNorm");

  if (req.initial_state) {
    d_conv.resize(m_.layers_.size());
    d_ssm.resize(m_.layers_.size());
    d_k.resize(m_.layers_.size());
    d_v.resize(m_.layers_.size());
  }
  for (size_t li = layers_run; li-- > 0;) {
    check_grad_abort(req.abort);
    const Layer& l = m_.layers_[li];
    const float* hin = ckpt + int64_t(li) * T * H;
    // The layer again, from its input row: the mixer's activations, its output, the FFN's input.
    cuda::rmsnorm_residual(const_cast<float*>(hin), H, nullptr, 0, DT::BF16, T, H, l.input_norm.as<float>(), d.eps, ws.x, H, DT::BF16, s);
    ws.mark("residual add + norm");
    if (l.attention) {
      m_.attention(l, li, ws);
    } else {
      restart_states(li);
      m_.mamba(l, li, ws);
    }
    copy(hmid, hin, size_t(T * H) * 4, cudaMemcpyDeviceToDevice);
    cuda::rmsnorm_residual(hmid, H, ws.delta, H, DT::BF16, T, H, l.ff_norm.as<float>(), d.eps, ws.x, H, DT::BF16, s);
    ws.mark("residual add + norm");
    // Feed-forward, then its norm; the residual passes dh through.
    for (int64_t t0 = 0; t0 < T; t0 += kFfnChunk) {
      CudaJambaModel::Workspace c = ffn_chunk(t0);
      ffn_back(l, c, dh + t0 * H, dx + t0 * H);
    }
    copy(dmid, dh, size_t(T * H) * 4, cudaMemcpyDeviceToDevice);
    cuda::rmsnorm_back(hmid, H, T, H, l.ff_norm.as<float>(), d.eps, dx, H, dmid, H, true, s);
    ws.mark("backward: RMSNorm");
    // The mixer, then its norm.
    if (l.attention) attention_back(l, li, dmid, dx, req.initial_state);
    else mamba_back(l, li, dmid, dx, req.initial_state);
    copy(dh, dmid, size_t(T * H) * 4, cudaMemcpyDeviceToDevice);
    cuda::rmsnorm_back(hin, H, T, H, l.input_norm.as<float>(), d.eps, dx, H, dh, H, true, s);
    ws.mark("backward: RMSNorm");
  }

  GradResult res;
  std::vector<float> rows(size_t(T * H));
  copy(rows.data(), dh, rows.size() * 4, cudaMemcpyDeviceToHost);
  res.d_initial.assign(E, std::vector<LayerState>(req.initial_state ? m_.layers_.size() : 0));
  if (req.initial_state) {
    const int64_t kvw = d.kv_heads * d.head_dim, cs = pools->conv_size(), ss = pools->ssm_size();
    for (size_t li = 0; li < layers_run; ++li)
      for (size_t e = 0; e < E; ++e) {
        LayerState& st = res.d_initial[e][li];
        if (!m_.is_attention_[li]) {
          st.conv.resize(size_t(cs));
          st.ssm.resize(size_t(ss));
          copy(st.conv.data(), d_conv[li].as<float>() + int64_t(e) * cs, size_t(cs) * 4, cudaMemcpyDeviceToHost);
          copy(st.ssm.data(), d_ssm[li].as<float>() + int64_t(e) * ss, size_t(ss) * 4, cudaMemcpyDeviceToHost);
        } else {
          st.k.resize(size_t(past[e] * kvw));
          st.v.resize(size_t(past[e] * kvw));
          copy(st.k.data(), d_k[li].as<float>() + int64_t(kv_at[e]) * kvw, st.k.size() * 4, cudaMemcpyDeviceToHost);
          copy(st.v.data(), d_v[li].as<float>() + int64_t(kv_at[e]) * kvw, st.v.size() * 4, cudaMemcpyDeviceToHost);
        }
      }
  }
  check(cudaStreamSynchronize(s), "backward");
  if (timer) res.profile = timer->totals();
  ws.timer = nullptr;
  res.d_rows.resize(E);
  for (size_t e = 0; e < E; ++e) res.d_rows[e].assign(rows.begin() + offsets[e] * H, rows.begin() + offsets[e + 1] * H);
  arena = Arena();  // the tape's memory goes now, not with the tape
  return res;
}

// dx = the feed-forward's input gradient from dy for the rows of chunk c, its activations
// recomputed from c.x (the normed input).
void CudaGradTape::ffn_back(const Layer& l, CudaJambaModel::Workspace& c, const float* dy, float* dxo) {
  const ModelDims& d = m_.dims_;
  const int64_t T = c.T, H = d.hidden, I = l.gate_up.n / 2;
  cudaStream_t s = stream();
  bf16(dy, T * H, gbf);
  if (!l.moe) {
    m_.gemm(c.x, H, l.gate_up, c.all, nullptr, c.gu, 2 * I, false);
    c.mark("dense MLP gate|up");
    m_.gemm_dx(gbf, H, l.down, c.all, nullptr, dact, I, false);
    c.mark("backward: dense MLP down dX");
    cuda::silu_gate_back(c.gu, 2 * I, dact, I, T, I, dgu, 2 * I, s);
    m_.gemm_dx(dgu, 2 * I, l.gate_up, c.all, nullptr, dxo, H, false);
    c.mark("backward: dense MLP gate|up dX");
    return;
  }
  const int E = int(d.experts), k = int(d.top_k);
  const int64_t R = T * k;
  // The routing and the experts' activations, as the forward made them.
  m_.gemm(c.x, H, l.router, c.all, nullptr, c.router, E, true);
  cuda::moe_route(c.router, T, E, k, c.idx, c.weight, c.counts, c.expert_off, c.active, c.row_of, c.token_of_row, c.row_weight, s);
  cuda::gather_rows(c.x, H, DT::BF16, c.token_of_row, R, H, c.xg, H, s);
  const Rows grouped{E, c.expert_off, c.active, R, T, false};
  m_.gemm(c.xg, H, l.gate_up, grouped, nullptr, c.gu, 2 * I, false);
  cuda::silu_gate(c.gu, 2 * I, DT::BF16, R, I, c.act, I, s);
  m_.gemm(c.act, I, l.down, grouped, nullptr, eo, H, true);  // before the routing weight
  c.mark("experts (recompute)");
  // Through the experts: each row's dy, weighted.
  cuda::gather_rows(gbf, H, DT::BF16, c.token_of_row, R, H, dyg, H, s);
  cuda::routing_weight_grad(dy, eo, c.token_of_row, R, H, dweight, s);
  m_.gemm_dx(dyg, H, l.down, grouped, c.row_weight, dact, I, false);
  c.mark("backward: experts down dX");
  cuda::silu_gate_back(c.gu, 2 * I, dact, I, R, I, dgu, 2 * I, s);
  m_.gemm_dx(dgu, 2 * I, l.gate_up, grouped, nullptr, dxg, H, false);
  c.mark("backward: experts gate|up dX");
  cuda::moe_combine(dxg, DT::F32, H, c.row_of, T, k, dxo, false, s);
  // Through the router's softmax over every expert.
  cuda::router_back(c.router, c.idx, c.row_of, dweight, T, E, k, dlogit, s);
  m_.gemm_dx(dlogit, E, l.router, c.all, nullptr, dxo, H, true);
  c.mark("backward: MoE combine + router");
}

void CudaGradTape::mamba_back(const Layer& l, size_t li, const float* dy, float* dxo, bool want_state) {
  const ModelDims& d = m_.dims_;
  const int64_t T = ws.T, H = d.hidden, Di = d.d_inner, N = d.d_state, R = d.dt_rank, P = R + 2 * N, K = d.d_conv;
  const int64_t E = int64_t(offsets.size()) - 1, cs = pools->conv_size(), ss = pools->ssm_size();
  cudaStream_t s = stream();
  if (want_state) {
    d_conv[li] = DeviceBuffer(size_t(E * cs) * 4);
    d_ssm[li] = DeviceBuffer(size_t(E * ss) * 4);
  }
  auto* xz = static_cast<const uint16_t*>(ws.xz);
  auto* pn = static_cast<const uint16_t*>(ws.pn);
  // y's gradient lives in dxz's first half (free until the conv's backward writes it); the
  // scan's dz goes to the second half.
  float* dyo = dxz;
  bf16(dy, T * H, gbf);
  m_.gemm_dx(gbf, H, l.out_proj, ws.all, nullptr, dyo, 2 * Di, false);
  ws.mark("backward: mamba out_proj dX");
  for (int64_t e = 0; e < E; ++e) {
    const int64_t o = offsets[size_t(e)], n = offsets[size_t(e + 1)] - o;
    cuda::ScanArgs a{};
    a.u = static_cast<const uint16_t*>(ws.xc) + o * Di; a.ldu = Di;
    a.dt = static_cast<const uint16_t*>(ws.dt) + o * Di; a.lddt = Di;
    a.b = pn + o * P + R; a.ldb = P;
    a.c = pn + o * P + R + N; a.ldc = P;
    a.z = xz + o * 2 * Di + Di; a.ldz = 2 * Di;
    a.in_type = DT::BF16;
    a.a = l.a.as<float>(); a.d_skip = l.d.as<float>(); a.dt_bias = l.dt_bias.as<float>();
    a.t_len = n; a.d_inner = Di; a.d_state = N;
    cuda::ScanGrads g{};
    g.dy = dyo + o * 2 * Di; g.lddy = 2 * Di;
    g.du = du + o * Di; g.lddu = Di;
    g.ddt = ddt + o * Di; g.ldddt = Di;
    g.dz = dxz + o * 2 * Di + Di; g.lddz = 2 * Di;
    g.db = dbc + o * 2 * N; g.lddb = 2 * N;
    g.dc = dbc + o * 2 * N + N; g.lddc = 2 * N;
    g.dstate = want_state ? d_ssm[li].as<float>() + e * ss : nullptr;
    cuda::selective_scan_back(a, init_ssm[li].as<float>() + e * ss, g, scan_ws, s);
  }
  ws.mark("backward: mamba scan");
  // Through dt_proj and Jamba's dt/B/C norms, back to x_proj's input.
  bf16(ddt, T * Di, gbf);
  m_.gemm_dx(gbf, Di, l.dt_proj, ws.all, nullptr, ddtn, R, false);
  cuda::rmsnorm_back(ws.p, P, T, R, l.dt_norm.as<float>(), d.eps, ddtn, R, dp, P, false, s);
  cuda::rmsnorm_back(ws.p + R, P, T, N, l.b_norm.as<float>(), d.eps, dbc, 2 * N, dp + R, P, false, s);
  cuda::rmsnorm_back(ws.p + R + N, P, T, N, l.c_norm.as<float>(), d.eps, dbc + N, 2 * N, dp + R + N, P, false, s);
  ws.mark("backward: mamba dt_proj dX + dt/B/C norms");
  bf16(dp, T * P, gbf);
  m_.gemm_dx(gbf, P, l.x_proj, ws.all, nullptr, du, Di, true);
  ws.mark("backward: mamba x_proj dX");
  const float* cb = l.conv_b.p ? l.conv_b.as<float>() : nullptr;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t o = offsets[size_t(e)], n = offsets[size_t(e + 1)] - o;
    cuda::causal_conv1d_silu_back(xz + o * 2 * Di, 2 * Di, DT::BF16, n, Di, l.conv_w.as<float>(), int(K), cb, init_conv[li].as<float>() + e * cs,
                                  du + o * Di, Di, dxz + o * 2 * Di, 2 * Di, want_state ? d_conv[li].as<float>() + e * cs : nullptr, s);
  }
  ws.mark("backward: mamba conv");
  bf16(dxz, T * 2 * Di, gbf);
  m_.gemm_dx(gbf, 2 * Di, l.in_proj, ws.all, nullptr, dxo, H, false);
  ws.mark("backward: mamba in_proj dX");
}

void CudaGradTape::attention_back(const Layer& l, size_t li, const float* dy, float* dxo, bool want_state) {
  const ModelDims& d = m_.dims_;
  const int64_t T = ws.T, H = d.hidden, hd = d.head_dim, qw = d.heads * hd, kvw = d.kv_heads * hd, W = qw + 2 * kvw;
  const int64_t E = int64_t(offsets.size()) - 1;
  cudaStream_t s = stream();
  // K/V gradients of every position (prefix and rows), kept for the initial state's.
  DeviceBuffer dk(kv_total * size_t(kvw) * 4), dv(kv_total * size_t(kvw) * 4);
  bf16(dy, T * H, gbf);
  m_.gemm_dx(gbf, H, l.o, ws.all, nullptr, dO, qw, false);
  ws.mark("backward: attention o dX");
  for (int64_t e = 0; e < E; ++e) {
    const int64_t o = offsets[size_t(e)], n = offsets[size_t(e + 1)] - o, pe = past[size_t(e)];
    const size_t pool_at = size_t(e) * size_t(pools->context * kvw);
    float* dke = dk.as<float>() + kv_at[size_t(e)] * size_t(kvw);
    float* dve = dv.as<float>() + kv_at[size_t(e)] * size_t(kvw);
    cuda::AttentionBackArgs a{};
    a.q = static_cast<const uint16_t*>(ws.qkv) + o * W; a.ldq = W;
    a.k = pools->k[li].as<uint16_t>() + pool_at;
    a.v = pools->v[li].as<uint16_t>() + pool_at;
    a.dout = dO + o * qw; a.lddout = qw;
    a.dq = dqkv + o * W; a.lddq = W;
    a.dk = dke; a.dv = dve; a.lddkv = kvw;
    a.lse = lse + o * d.heads; a.delta = delta + o * d.heads;
    a.t_len = n; a.past = pe;
    a.heads = int(d.heads); a.kv_heads = int(d.kv_heads); a.head_dim = int(hd);
    a.scale = float(1.0 / std::sqrt(double(hd)));
    cuda::attention_back(a, s);
    // The rows' own keys and values take their gradients into the q|k|v product's.
    check(cudaMemcpy2DAsync(dqkv + o * W + qw, size_t(W) * 4, dke + pe * kvw, size_t(kvw) * 4, size_t(kvw) * 4, size_t(n),
                            cudaMemcpyDeviceToDevice, s), "cudaMemcpy2DAsync");
    check(cudaMemcpy2DAsync(dqkv + o * W + qw + kvw, size_t(W) * 4, dve + pe * kvw, size_t(kvw) * 4, size_t(kvw) * 4, size_t(n),
                            cudaMemcpyDeviceToDevice, s), "cudaMemcpy2DAsync");
  }
  ws.mark("backward: attention");
  bf16(dqkv, T * W, gbf);
  m_.gemm_dx(gbf, W, l.qkv, ws.all, nullptr, dxo, H, false);
  ws.mark("backward: attention q|k|v dX");
  if (want_state) {
    d_k[li] = std::move(dk);
    d_v[li] = std::move(dv);
  } else {
    check(cudaStreamSynchronize(s), "attention backward");  // dk and dv are freed here
  }
}

}  // namespace jamba
