// What a backend's model offers the N-API glue: a forward pass over a batch of sequences, fresh
// sequence states, the input embedding rows and memory by dtype. JambaModel (csrc/model) runs on
// the CPU; CudaJambaModel (csrc/model/cuda_model) on one NVIDIA GPU. Both take the same plan.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "forward_request.h"
#include "grad_request.h"
#include "sequence_state.h"

namespace jamba {

class Executor {
 public:
  virtual ~Executor() = default;
  virtual ForwardResult forward(const ForwardRequest& req) const = 0;
  virtual std::unique_ptr<SequenceState> new_state() const = 0;
  // The input embedding rows of `ids` (float32, ids.size() × hidden), exactly as forward() uses them.
  virtual std::vector<float> embed(const std::vector<int32_t>& ids) const = 0;
  virtual std::map<std::string, size_t> bytes_by_dtype() const = 0;
  virtual const ModelDims& dims() const = 0;
  virtual const char* device() const = 0;
  // Training through the frozen model (grad_request.h); a backend without it says so.
  virtual std::unique_ptr<GradTape> forward_for_grad(const GradRequest& req) const;
};

}  // namespace jamba
