// The CUDA executor: the whole Jamba forward pass on one NVIDIA GPU, from the same plan as the
// CPU backend. Weights go from safetensors to device memory in bf16 one tensor at a time (no
// host copy of the checkpoint); ExpertsInt8 quantizes each expert on the device as it arrives.
// Sequence states (conv and SSM states, and the KV cache up to context_length positions) live in
// preallocated per-layer pools with one slot per sequence, max_sequences slots in all.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "executor.h"
#include "jamba_model.h"

namespace jamba {

struct DeviceBuffer {
  void* p = nullptr;
  size_t bytes = 0;
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; o.bytes = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T> T* as() const { return static_cast<T*>(p); }
};

class CudaJambaModel : public Executor {
 public:
  CudaJambaModel(const ModelPlan& plan, std::function<void(uint64_t)> progress);
  ~CudaJambaModel() override;
  ForwardResult forward(const ForwardRequest& req) const override;
  std::unique_ptr<SequenceState> new_state() const override;
  std::vector<float> embed(const std::vector<int32_t>& ids) const override;
  std::map<std::string, size_t> bytes_by_dtype() const override;
  const ModelDims& dims() const override { return dims_; }
  const char* device() const override { return "cuda"; }
  // Training through the frozen model (grad_request.h; cuda_grad.cpp).
  std::unique_ptr<GradTape> forward_for_grad(const GradRequest& req) const override;

  // Projection weights: [n, k] bf16, or int8 with a float32 scale per row; E of them stacked for experts.
  struct Mat {
    DeviceBuffer w, scale, bias;
    bool int8 = false;
    int64_t n = 0, k = 0;
  };
  struct Pools;  // the sequence-state pools (shared with the states, which may outlive the model)

 private:
  struct Layer {
    bool attention = false, moe = false;
    DeviceBuffer input_norm, ff_norm;
    Mat in_proj, x_proj, dt_proj, out_proj;                                   // Mamba
    DeviceBuffer conv_w, conv_b, a, d, dt_bias, dt_norm, b_norm, c_norm;      // Mamba, float32
    Mat qkv, o;                                                               // attention
    Mat router, gate_up, down;                                                // MLP or experts
  };
  struct Workspace;
  friend class CudaGradTape;

  std::shared_ptr<Pools> make_pools(int64_t slots, int64_t context) const;
  void carve(Workspace& ws, int64_t ffn_rows, const std::function<void(void**, size_t)>& want) const;
  int64_t max_inner() const;  // the widest MLP or expert

  void layers(Workspace& ws, const ForwardRequest& req, bool capturing) const;
  void mamba(const Layer& l, size_t li, Workspace& ws) const;
  void attention(const Layer& l, size_t li, Workspace& ws) const;
  void feed_forward(const Layer& l, size_t li, Workspace& ws) const;
  // The rows of a product: one matrix (experts 1), or expert groups from routing on the device.
  // A decode pass of at most cuda::kSkinnyRows sequences streams the weights (skinny_gemm); every
  // other pass runs the tensor-core tiles (grouped_gemm). Both give a row the same bits whatever
  // shares its launch, so a sequence decodes alike alone or batched; the choice is by pass kind,
  // not by row count, so that a short prompt's prefill and a long one's take the same path.
  struct Rows {
    int experts;
    const int32_t* offsets;
    const int32_t* active;  // experts with rows (null for one matrix)
    int64_t rows;
    int64_t group_rows;     // bound on the rows of one matrix
    bool skinny;
  };
  void gemm(const void* a, int64_t lda, const Mat& m, const Rows& r, const float* row_scale, void* out, int64_t ldo,
            bool f32_out) const;
  // act = silu(gate) · up of a merged gate|up matrix, fused into the skinny product; `gu` is the
  // scratch the tiled path writes the product to first.
  void gemm_silu_gate(const void* a, int64_t lda, const Mat& m, const Rows& r, void* gu, void* act) const;
  // dx (+)= dy · W over the same rows (the input gradient of gemm; tensor-core tiles always).
  void gemm_dx(const void* dy, int64_t lddy, const Mat& m, const Rows& r, const float* row_scale, float* dx, int64_t lddx,
               bool accumulate) const;

  ModelDims dims_;
  std::vector<Layer> layers_;
  Mat embed_, lm_head_;
  bool tied_ = false;
  DeviceBuffer final_norm_;
  std::shared_ptr<Pools> pools_;
  std::vector<bool> is_attention_;
  std::map<std::string, size_t> bytes_;
  void* stream_ = nullptr;  // cudaStream_t
  mutable std::mutex mu_;   // one forward pass at a time on the stream and workspace
  mutable DeviceBuffer arena_;
  // Decode steps captured as CUDA graphs, by batch size and logits rows. They hold arena
  // addresses: each keeps a fingerprint of the arena and its carving, and is captured again when
  // a step's differs; all are dropped when the arena moves.
  struct CapturedGraph {
    void* exec;       // cudaGraphExec_t
    uint64_t layout;  // arena base and offsets at capture
  };
  mutable std::map<std::string, CapturedGraph> graphs_;
  void drop_graphs() const;
};

}  // namespace jamba
