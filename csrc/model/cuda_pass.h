// What a pass of the CUDA executor works with: the sequence-state pools, the per-pass workspace
// and the op timer. Shared by the forward (cuda_model.cpp) and training through the frozen model
// (cuda_grad.cpp), which runs the same layer code over pools of its own.
#pragma once
#include <cuda_runtime_api.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../core/dtype.h"
#include "../core/error.h"
#include "../cuda/check.h"
#include "cuda_model.h"

namespace jamba {

using cuda::check;

// The executor keeps its stream as void* (cuda_model.h is plain C++).
inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Slot operations (zeroing, snapshot copies) run on their own stream, so that creating, resetting,
// saving or restoring one sequence never waits for a forward pass of others; a pass first waits
// for this stream, so it always sees the slots as those operations left them.
struct CudaJambaModel::Pools {
  cudaStream_t stream = nullptr;
  ~Pools() {
    if (stream) cudaStreamDestroy(stream);
  }
  ModelDims dims;
  std::vector<bool> attention;
  int64_t slots = 0, context = 0;
  std::vector<DeviceBuffer> conv, ssm, k, v;  // per layer (empty where the layer has none)
  std::mutex mu;
  std::vector<int32_t> free;

  int64_t conv_size() const { return dims.d_inner * (dims.d_conv - 1); }
  int64_t ssm_size() const { return dims.d_inner * dims.d_state; }
  int64_t kv_width() const { return dims.kv_heads * dims.head_dim; }

  void zero(int32_t slot) {
    for (size_t i = 0; i < attention.size(); ++i) {
      if (attention[i]) continue;
      check(cudaMemsetAsync(conv[i].as<float>() + slot * conv_size(), 0, size_t(conv_size()) * 4, stream), "cudaMemsetAsync");
      check(cudaMemsetAsync(ssm[i].as<float>() + slot * ssm_size(), 0, size_t(ssm_size()) * 4, stream), "cudaMemsetAsync");
    }
  }
  void copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, const char* what) {
    check(cudaMemcpyAsync(dst, src, bytes, kind, stream), what);
  }
  void wait(const char* what) { check(cudaStreamSynchronize(stream), what); }
  // A host state into `slot` (conv and SSM states, the K/V prefix as bf16).
  void push(int32_t slot, const SequenceState& host) {
    auto& p = *this;
    const int64_t pos = host.position(), kvw = p.kv_width();
    if (pos > p.context) fail("invalid_argument", "the state holds " + std::to_string(pos) + " positions, more than this model's context length " + std::to_string(p.context));
    for (size_t i = 0; i < p.attention.size(); ++i) {
      const LayerState& l = host.layer(i);
      if (!p.attention[i]) {
        p.copy(p.conv[i].as<float>() + slot * p.conv_size(), l.conv.data(), size_t(p.conv_size()) * 4, cudaMemcpyHostToDevice, "push conv");
        p.copy(p.ssm[i].as<float>() + slot * p.ssm_size(), l.ssm.data(), size_t(p.ssm_size()) * 4, cudaMemcpyHostToDevice, "push ssm");
        continue;
      }
      const size_t off = size_t(slot) * size_t(p.context * kvw);
      const std::vector<uint16_t> kb = to_bf16_bits(l.k), vb = to_bf16_bits(l.v);
      p.copy(p.k[i].as<uint16_t>() + off, kb.data(), kb.size() * 2, cudaMemcpyHostToDevice, "push keys");
      p.copy(p.v[i].as<uint16_t>() + off, vb.data(), vb.size() * 2, cudaMemcpyHostToDevice, "push values");
      p.wait("push");  // the staging vectors must outlive their copies
    }
    p.wait("push");
  }
};

// The per-op profile of one uncaptured pass (ForwardRequest::profile): an event after each op,
// the time between consecutive events charged to the op that ended there, summed by name.
class OpTimer {
 public:
  explicit OpTimer(cudaStream_t s) : s_(s) { mark(nullptr); }
  ~OpTimer() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

  void mark(const char* op) {
    cudaEvent_t e = nullptr;
    check(cudaEventCreate(&e), "cudaEventCreate");
    events_.push_back(e);
    ops_.push_back(op);
    check(cudaEventRecord(e, s_), "cudaEventRecord");
  }

  // After the stream has synchronised: ms per op, in the order each first ran.
  std::vector<std::pair<std::string, double>> totals() const {
    std::vector<std::pair<std::string, double>> out;
    for (size_t i = 1; i < events_.size(); ++i) {
      float ms = 0.f;
      check(cudaEventElapsedTime(&ms, events_[i - 1], events_[i]), "cudaEventElapsedTime");
      auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == ops_[i]; });
      if (it == out.end()) out.emplace_back(ops_[i], ms);
      else it->second += ms;
    }
    return out;
  }

 private:
  cudaStream_t s_;
  std::vector<cudaEvent_t> events_;
  std::vector<const char*> ops_;
};

struct CudaJambaModel::Workspace {
  int64_t T = 0, S = 0, longest = 0;
  bool decode = false;                  // every sequence adds exactly one row
  std::vector<int64_t> offsets;         // host: row offsets per sequence (S + 1)
  std::vector<int32_t> slot, past;      // host copies
  int32_t *d_slot, *d_past, *d_tokoff, *d_off_all, *d_off_rows;
  Pools* pools = nullptr;               // the states' pools: the model's, or a training pass's own
  float* h;                             // [T, H] residual stream
  void *x, *delta;                      // [T, H] bf16
  bool has_delta = false;
  void *xz, *xc, *pn, *dt, *y;          // Mamba
  float* p;
  void *qkv, *att;                      // attention
  void* attn_ws;
  float *router, *weight, *row_weight;  // MoE
  int32_t *idx, *counts, *expert_off, *active, *row_of, *token_of_row;
  Rows all{};                           // every row of the pass, one matrix
  void *xg, *gu, *act, *ey;
  OpTimer* timer = nullptr;             // with ForwardRequest::profile
  std::map<std::string, std::vector<float>>* trace = nullptr;  // with ForwardRequest::capture
  // With a trace: a copy of `count` float32 values at `p` under `name` (the stream orders it).
  void keep(const std::string& name, const float* p, int64_t count, cudaStream_t s) const {
    if (!trace) return;
    std::vector<float>& v = (*trace)[name];
    v.resize(size_t(count));
    check(cudaMemcpyAsync(v.data(), p, size_t(count) * 4, cudaMemcpyDeviceToHost, s), "trace");
  }
  // Rows [t0, t0 + n) of the pass, for the per-token feed-forward run a chunk at a time (training):
  // the residual stream, its norm and the delta from row t0, `offsets` = {0, n} on the device; the
  // feed-forward's own buffers as they are (carved for the chunk).
  Workspace rows(int64_t t0, int64_t n, int64_t hidden, const int32_t* offsets) const {
    Workspace w = *this;
    w.T = n;
    w.h = h + t0 * hidden;
    w.x = static_cast<uint16_t*>(x) + t0 * hidden;
    w.delta = static_cast<uint16_t*>(delta) + t0 * hidden;
    w.all = CudaJambaModel::Rows{1, offsets, nullptr, n, n, false};
    return w;
  }
  // Ends an op family's span: with a timer, the time since the last mark is charged to `op`.
  void mark(const char* op) const {
    if (timer) timer->mark(op);
  }
};

}  // namespace jamba
