// Everything one sequence carries between forward calls: per Mamba layer the last d_conv-1
// pre-conv inputs and the float32 SSM state, per attention layer its keys and values.
#pragma once
#include <cstdint>
#include <vector>
#include "config.h"

namespace jamba {

struct LayerState {
  std::vector<float> conv;  // [d_inner, d_conv - 1]   (Mamba)
  std::vector<float> ssm;   // [d_inner, d_state]      (Mamba)
  std::vector<float> k, v;  // [tokens, kv_heads * head_dim] (attention), grown geometrically
};

class SequenceState {
 public:
  SequenceState(const ModelDims& dims, const std::vector<bool>& is_attention) : dims_(dims), attention_(is_attention) {
    layers_.resize(is_attention.size());
    for (size_t i = 0; i < is_attention.size(); ++i) {
      if (!is_attention[i]) {
        layers_[i].conv.assign(size_t(dims.d_inner * (dims.d_conv - 1)), 0.f);
        layers_[i].ssm.assign(size_t(dims.d_inner * dims.d_state), 0.f);
      }
    }
  }

  void reset() {
    for (auto& l : layers_) {
      std::fill(l.conv.begin(), l.conv.end(), 0.f);
      std::fill(l.ssm.begin(), l.ssm.end(), 0.f);
      l.k.clear();
      l.v.clear();
    }
    position_ = 0;
  }

  size_t bytes() const {
    size_t b = 0;
    for (auto& l : layers_) b += (l.conv.capacity() + l.ssm.capacity() + l.k.capacity() + l.v.capacity()) * sizeof(float);
    return b;
  }

  LayerState& layer(size_t i) { return layers_[i]; }
  const LayerState& layer(size_t i) const { return layers_[i]; }
  size_t num_layers() const { return layers_.size(); }
  bool is_attention(size_t i) const { return attention_[i]; }
  const ModelDims& dims() const { return dims_; }
  int64_t position() const { return position_; }
  void advance(int64_t n) { position_ += n; }
  // Restores a position after its layer states were replaced wholesale (snapshot restore).
  void set_position(int64_t p) { position_ = p; }

 private:
  ModelDims dims_;
  std::vector<bool> attention_;
  std::vector<LayerState> layers_;
  int64_t position_ = 0;
};

}  // namespace jamba
