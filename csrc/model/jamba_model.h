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
};

struct ForwardRequest {
  std::vector<SequenceState*> states;
  std::vector<std::vector<int32_t>> tokens;  // per sequence, appended after its state
  // Per sequence (or empty): rows of `hidden` floats that enter the first layer in place of token
  // embeddings, placed before that sequence's tokens (soft prompts, inputs_embeds).
  std::vector<std::vector<float>> embeds;
  enum class Logits { None, Last, All } logits = Logits::All;
  bool capture = false;                      // also return embeddings, layer outputs, router logits
  bool hidden = false;                       // also return the final-norm hidden states of the logits rows
  // One flag per sequence (null: none). The pass stops between layers once every sequence's
  // flag is nonzero (read atomically): a batch keeps running while one of its callers still waits.
  std::vector<const int32_t*> abort;
};

struct ForwardResult {
  std::vector<float> logits;                        // rows × vocab, rows in request order
  std::vector<float> hidden;                        // rows × hidden when asked (same rows as logits)
  std::map<std::string, std::vector<float>> captured;
};

class JambaModel {
 public:
  // Reads and packs every weight; `progress` hears the bytes read so far after each tensor.
  explicit JambaModel(const ModelPlan& plan, std::function<void(uint64_t)> progress = {});
  ForwardResult forward(const ForwardRequest& req) const;
  std::unique_ptr<SequenceState> new_state() const;
  // The input embedding rows of `ids` (float32, ids.size() × hidden), exactly as forward() uses them.
  std::vector<float> embed(const std::vector<int32_t>& ids) const;
  const ModelDims& dims() const { return dims_; }
  std::map<std::string, size_t> bytes_by_dtype() const;

 private:
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

  void mamba_mixer(const Layer& layer, const ForwardRequest& req, const std::vector<int64_t>& offsets, size_t li,
                   const float* x, float* out) const;
  void attention_mixer(const Layer& layer, const ForwardRequest& req, const std::vector<int64_t>& offsets, size_t li,
                       const float* x, float* out) const;

  ModelDims dims_;
  cpu::PackedWeight embed_, lm_head_;
  bool tied_ = false;
  std::vector<float> final_norm_;
  std::vector<Layer> layers_;
  std::vector<bool> is_attention_;
};

}  // namespace jamba
