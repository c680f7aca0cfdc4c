// A forward pass's request and result, shared by every backend (see executor.h).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sequence_state.h"

namespace jamba {

// Sampling in the pass (CUDA): the sequence's next token is drawn on the device from its last
// row of logits, so the logits need not come back to the host.
struct SampleSpec {
  bool on = false;
  float temperature = 0.f;  // 0: greedy
  int top_k = 0;
  float top_p = 1.f;
  float min_p = 0.f;
  uint64_t seed = 0, step = 0;
  // Grammar-constrained decoding: bit i of word i / 32 set where token i is allowed (empty: all).
  std::vector<uint32_t> mask;
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
  // Per sequence (or empty): draw its next token on the device (logits must be Last). When every
  // sequence is sampled, no logits are returned.
  std::vector<SampleSpec> sample;
  // CUDA: time each op family of this pass with events (the pass runs uncaptured).
  bool profile = false;
};

struct ForwardResult {
  std::vector<float> logits;                        // rows × vocab, rows in request order
  std::vector<float> hidden;                        // rows × hidden when asked (same rows as logits)
  std::vector<int32_t> sampled;                     // per sequence with `sample`: its drawn token (else -1)
  std::map<std::string, std::vector<float>> captured;
  std::vector<std::pair<std::string, double>> profile;  // with `profile`: ms per op family, in pass order
};

}  // namespace jamba
