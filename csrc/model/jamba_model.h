// The Jamba executor: weights packed for the CPU kernels, and a forward pass over a batch of
// sequences of any lengths. The graph (which layer has which mixer and feed-forward, which
// checkpoint tensor feeds which weight) is decided in lib/graph.ts and handed over as a plan.
#pragma once
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../cpu/gemm.h"
#include "../cpu/mlp.h"
#include "../cpu/moe.h"
#include "config.h"
#include "executor.h"
#include "sequence_state.h"
#include "weight_source.h"

namespace jamba {

struct MambaSources {
  TensorSource in_proj, in_proj_bias, conv_weight, conv_bias, x_proj, dt_proj, dt_proj_bias, a_log, d, out_proj,
      out_proj_bias, dt_norm, b_norm, c_norm;
};
struct AttentionSources { TensorSource q, k, v, o; };
struct MlpSources { TensorSource gate, up, down; };

struct LayerPlan {
  bool attention = false;
  bool moe = false;
  TensorSource input_norm, ff_norm;
  MambaSources mamba;
  AttentionSources attn;
  MlpSources mlp;                  // dense feed-forward
  TensorSource router;             // MoE
  std::vector<MlpSources> experts; // MoE
};

struct ModelPlan {
  ModelDims dims;
  TensorSource embed, final_norm, lm_head;  // lm_head absent: tied to embed
  std::vector<LayerPlan> layers;
  bool experts_int8 = false;
  std::string device = "cpu";               // "cpu" or "cuda"
  int64_t max_sequences = 16;               // cuda: sequences alive at once (state pools)
  int64_t context_length = 4096;            // cuda: positions per sequence (KV cache)
  bool synthetic = false;                   // cuda: random weights made on the device, no files (benchmarks)
};

// The executor for plan.device; "cuda" needs a build with the CUDA backend.
std::shared_ptr<Executor> make_executor(const ModelPlan& plan, std::function<void(uint64_t)> progress);

// The CPU backend's executor.
class JambaModel : public Executor {
 public:
  // Reads and packs every weight; `progress` hears the bytes read so far after each tensor.
  explicit JambaModel(const ModelPlan& plan, std::function<void(uint64_t)> progress = {});
  ForwardResult forward(const ForwardRequest& req) const override;
  std::unique_ptr<SequenceState> new_state() const override;
  std::vector<float> embed(const std::vector<int32_t>& ids) const override;
  const ModelDims& dims() const override { return dims_; }
  std::map<std::string, size_t> bytes_by_dtype() const override;
  const char* device() const override { return "cpu"; }
  std::unique_ptr<GradTape> forward_for_grad(const GradRequest& req) const override;

 private:
  friend class CpuGradTape;  // jamba_grad.cpp: the backward, layer by layer
  struct Mamba {
    cpu::PackedWeight in_proj, x_proj, dt_proj, out_proj;
    std::vector<float> conv_w, conv_b, a, d, dt_bias, dt_norm, b_norm, c_norm;
  };
  struct Attention { cpu::PackedWeight qkv, o; };
  struct Layer {
    bool attention = false, moe = false;
    std::vector<float> input_norm, ff_norm;
    Mamba mamba;
    Attention attn;
    cpu::GatedMlp mlp;
    cpu::MoeBlock moe_block;
  };

  // What a mixer computed besides its output, kept when a backward needs it.
  struct MambaActs { std::vector<float> xz, u, p_raw, p, dt; };  // p: after the dt/B/C norms; dt: before its bias
  struct AttentionActs { std::vector<float> qkv, o, lse; };      // the keys and values are in the states
  // Everything of one layer's forward that its backward reads (besides the layer's input).
  struct LayerActs { MambaActs mamba; AttentionActs attn; std::vector<float> hmid; };

  // The mixers advance `states` (conv, SSM, K/V) by each sequence's rows (offsets).
  void mamba_mixer(const Layer& layer, const std::vector<SequenceState*>& states, const std::vector<int64_t>& offsets, size_t li,
                   const float* x, float* out, MambaActs* keep = nullptr) const;
  void attention_mixer(const Layer& layer, const std::vector<SequenceState*>& states, const std::vector<int64_t>& offsets, size_t li,
                       const float* x, float* out, AttentionActs* keep = nullptr) const;
  // One decoder layer on the residual stream h (T × hidden), in place; x and delta are T × hidden
  // scratch. router_logits, when not null, receives a MoE layer's router output; keep, when not
  // null, the mixer's intermediates and the residual between the two sub-blocks.
  void layer_forward(size_t li, const std::vector<SequenceState*>& states, const std::vector<int64_t>& offsets, float* h,
                     float* x, float* delta, std::vector<float>& scratch, float* router_logits, LayerActs* keep = nullptr) const;

  ModelDims dims_;
  cpu::PackedWeight embed_, lm_head_;
  bool tied_ = false;
  std::vector<float> final_norm_;
  std::vector<Layer> layers_;
  std::vector<bool> is_attention_;
};

}  // namespace jamba
