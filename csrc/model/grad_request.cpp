// The checks every backend's forwardForGrad starts with (grad_request.h).
#include <cmath>
#include <string>

#include "../core/error.h"
#include "grad_request.h"

namespace jamba {

GradBatch check_grad_request(const GradRequest& req, const ModelDims& dims, size_t layers) {
  const int64_t H = dims.hidden, V = dims.vocab, L = int64_t(layers);
  if (req.examples.empty()) fail("invalid_argument", "forwardForGrad needs at least one example");
  if (req.stop_at_layer > L) fail("invalid_argument", "stopAtLayer " + std::to_string(req.stop_at_layer) + " is past the model's " + std::to_string(L) + " layers");
  GradBatch batch;
  for (size_t e = 0; e < req.examples.size(); ++e) {
    const GradExample& ex = req.examples[e];
    const std::string where = "examples[" + std::to_string(e) + "]";
    const int64_t n = int64_t(ex.ids.size());
    if (n == 0) fail("invalid_argument", where + " has no rows");
    int64_t vectors = 0;
    for (int32_t id : ex.ids) {
      if (id == -1) ++vectors;
      else if (id < 0 || id >= V) fail("invalid_argument", where + ": token id " + std::to_string(id) + " is outside [0, " + std::to_string(V) + ")");
    }
    if (int64_t(ex.embeds.size()) != vectors * H) fail("invalid_argument", where + ": " + std::to_string(vectors) + " vector rows need " + std::to_string(vectors * H) + " floats");
    if (ex.target_ids.size() != ex.target_rows.size() || ex.target_weights.size() != ex.target_rows.size())
      fail("invalid_argument", where + ": target rows, ids and weights differ in length");
    if (req.stop_at_layer >= 0 && !ex.target_rows.empty()) fail("invalid_argument", where + ": an early exit (stopAtLayer) has no loss, so no targets");
    for (size_t i = 0; i < ex.target_rows.size(); ++i) {
      if (ex.target_rows[i] < 0 || ex.target_rows[i] >= n) fail("invalid_argument", where + ": target row " + std::to_string(ex.target_rows[i]) + " is outside its " + std::to_string(n) + " rows");
      if (ex.target_ids[i] < 0 || ex.target_ids[i] >= V) fail("invalid_argument", where + ": target id " + std::to_string(ex.target_ids[i]) + " is outside [0, " + std::to_string(V) + ")");
      if (!std::isfinite(ex.target_weights[i])) fail("invalid_argument", where + ": a target weight is not finite");
      batch.target_rows.push_back(int32_t(batch.offsets.back() + ex.target_rows[i]));
      batch.target_ids.push_back(ex.target_ids[i]);
      batch.target_weights.push_back(ex.target_weights[i]);
      batch.target_example.push_back(e);
    }
    if (ex.initial && ex.initial->num_layers() != layers) fail("invalid_argument", where + ": the initial state is not of this model");
    batch.offsets.push_back(batch.offsets.back() + n);
  }
  return batch;
}

void check_grad_abort(const int32_t* flag) {
  if (flag && __atomic_load_n(flag, __ATOMIC_RELAXED) != 0) fail("aborted", "the operation was aborted");
}

}  // namespace jamba
