// Everything one sequence carries between forward calls: per Mamba layer the last d_conv-1
// pre-conv inputs and the float32 SSM state, per attention layer its keys and values.
//
// On the CPU the state lives in the vectors below. A GPU backend keeps it on the device instead
// (a slot of its state pools) and attaches a DeviceState: the vectors are then only a staging
// copy, filled by pull() for a snapshot and sent back by push() after a restore.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>
#include "config.h"

namespace jamba {

struct LayerState {
  std::vector<float> conv;  // [d_inner, d_conv - 1]   (Mamba)
  std::vector<float> ssm;   // [d_inner, d_state]      (Mamba)
  std::vector<float> k, v;  // [tokens, kv_heads * head_dim] (attention), grown geometrically
};

class SequenceState;

// A sequence's state held by a device backend.
class DeviceState {
 public:
  virtual ~DeviceState() = default;
  virtual void reset() = 0;
  virtual void pull(SequenceState& host) const = 0;   // device → the vectors of `host`
  virtual void push(const SequenceState& host) = 0;   // the vectors of `host` → device
  virtual size_t bytes(int64_t position) const = 0;  // held for a sequence at `position`
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

  // A device backend's state: the vectors start empty and stay a staging copy.
  SequenceState(const ModelDims& dims, const std::vector<bool>& is_attention, std::unique_ptr<DeviceState> device)
      : dims_(dims), attention_(is_attention), device_(std::move(device)) {
    layers_.resize(is_attention.size());
  }

  void reset() {
    if (device_) device_->reset();
    for (auto& l : layers_) {
      std::fill(l.conv.begin(), l.conv.end(), 0.f);
      std::fill(l.ssm.begin(), l.ssm.end(), 0.f);
      l.k.clear();
      l.v.clear();
    }
    position_ = 0;
  }

  size_t bytes() const {
    size_t b = device_ ? device_->bytes(position_) : 0;
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

  DeviceState* device() const { return device_.get(); }
  // Before reading the vectors (a snapshot): the device state copied into them.
  void pull() {
    if (device_) {
      for (size_t i = 0; i < layers_.size(); ++i)
        if (!attention_[i]) {
          layers_[i].conv.resize(size_t(dims_.d_inner * (dims_.d_conv - 1)));
          layers_[i].ssm.resize(size_t(dims_.d_inner * dims_.d_state));
        }
      device_->pull(*this);
    }
  }
  // After the vectors were replaced (a restore): sent to the device, the staging copy dropped.
  void push() {
    if (device_) {
      device_->push(*this);
      drop_staging();
    }
  }
  void drop_staging() {
    if (device_) for (auto& l : layers_) l = LayerState{};
  }

 private:
  ModelDims dims_;
  std::vector<bool> attention_;
  std::vector<LayerState> layers_;
  int64_t position_ = 0;
  std::unique_ptr<DeviceState> device_;
};

}  // namespace jamba
