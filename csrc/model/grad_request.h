// Training through the frozen model: a forward pass that keeps what its backward needs (one
// residual row per layer per token), and the backward with respect to the inputs only (input
// rows and initial states; the weights are never differentiated). Shared by every backend.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config.h"
#include "sequence_state.h"

namespace jamba {

struct GradExample {
  std::vector<int32_t> ids;       // per input row: a token id, or -1 for the next row of `embeds`
  std::vector<float> embeds;      // the rows fed as vectors, in order (hidden floats each)
  // Cross-entropy targets: row target_rows[i] predicts target_ids[i]; its loss counts
  // target_weights[i] times (the caller divides by the batch's total weight for a mean).
  std::vector<int32_t> target_rows, target_ids;
  std::vector<float> target_weights;
  std::shared_ptr<const SequenceState> initial;  // the state before the rows (a snapshot); null: zero
};

struct GradRequest {
  std::vector<GradExample> examples;
  int64_t stop_at_layer = -1;     // ≥ 0: run that many layers; `hidden` is then their output (no targets)
  bool hidden = false;            // return the final hidden states (after the final norm), or the early exit's
  bool logits = false;            // return every row's logits
  bool routing = false;           // return the experts each row was routed to, per MoE layer
  // Keep every layer's intermediates instead of recomputing them in the backward: about a third
  // less work, at several rows of activations per layer per token (small models, short examples).
  bool keep_activations = false;
  const int32_t* abort = nullptr; // the pass stops between layers once nonzero
};

// ∂L/∂ of what went in: per example, its rows (T × hidden), and with `initial_state` each
// layer's initial conv and SSM state (Mamba) or its K/V prefix (attention).
struct GradResult {
  std::vector<std::vector<float>> d_rows;
  std::vector<std::vector<LayerState>> d_initial;
  std::vector<std::pair<std::string, double>> profile;  // with BackwardRequest::profile: ms per op family
};

struct BackwardRequest {
  // Per example (or empty): a cotangent on the returned hidden states, added to the loss's gradient.
  std::vector<std::vector<float>> d_hidden;
  bool initial_state = false;
  bool profile = false;            // time the backward op by op (a backend that can says where it went)
  const int32_t* abort = nullptr;
};

class GradTape {
 public:
  virtual ~GradTape() = default;
  // Runs once (the tape's memory is freed after it).
  virtual GradResult backward(const BackwardRequest& req) = 0;

  double loss = 0;                            // Σ weight · cross-entropy over every target
  std::vector<double> example_loss;           // the same, per example
  std::vector<std::vector<float>> hidden;     // per example, with GradRequest::hidden
  std::vector<std::vector<float>> logits;     // per example, with GradRequest::logits
  // With GradRequest::routing: per layer (empty for a dense one), per example, rows × top-k expert ids.
  std::vector<std::vector<std::vector<int32_t>>> routing;
};

// A request's batch, checked against the model (every backend's first step): the examples' row
// offsets in the batch and every target as one list, its row counted in the batch.
struct GradBatch {
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> target_rows, target_ids;
  std::vector<float> target_weights;
  std::vector<size_t> target_example;
};
GradBatch check_grad_request(const GradRequest& req, const ModelDims& dims, size_t layers);
// Throws `aborted` once a request's abort flag is set (checked between layers).
void check_grad_abort(const int32_t* flag);

}  // namespace jamba
