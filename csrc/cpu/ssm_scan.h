// Mamba's selective scan (the SSM recurrence) with Jamba's fused epilogue.
//
// Per channel d and time t, with state h[d, :] carried in float32:
//   δ = softplus(dt[t, d] + dt_bias[d])            (softplus(v) = v for v > 20, as torch)
//   h[d, n] = exp(δ · A[d, n]) · h[d, n] + δ · B[t, n] · u[t, d]
//   y[t, d] = (Σ_n h[d, n] · C[t, n] + D[d] · u[t, d]) · silu(z[t, d])
// A is already -exp(A_log). `state` ([d_inner, d_state]) is read as the initial state and holds
// the final one on return, so the same call serves prefill (T tokens) and resumed prefill.
#pragma once
#include <cstdint>

namespace jamba::cpu {

struct ScanArgs {
  const float* u; int64_t ldu;      // [T, d_inner] conv output
  const float* dt; int64_t lddt;    // [T, d_inner] dt_proj output, bias not yet added
  const float* b; int64_t ldb;      // [T, d_state]
  const float* c; int64_t ldc;      // [T, d_state]
  const float* z; int64_t ldz;      // [T, d_inner] gate
  const float* a;                   // [d_inner, d_state]
  const float* d_skip;              // [d_inner]
  const float* dt_bias;             // [d_inner]
  float* y; int64_t ldy;            // [T, d_inner]
  int64_t t_len, d_inner, d_state;
};

void selective_scan(const ScanArgs& args, float* state);

// The decode step: one token for each of `batch` sequences, each with its own state
// (states[s] is [d_inner, d_state]). Row s of every matrix in args belongs to sequence s.
void selective_state_update(const ScanArgs& args, float* const* states, int64_t batch);

// The backward of selective_scan with respect to its inputs (A, D and dt_bias are frozen), from
// ∂L/∂y (dy). The states are never stored per token: a first pass keeps the state at the start
// of every 64-token chunk, then the chunks are walked last to first, each rebuilding its states
// from its start and running the reverse recurrence (G ← ∂L/∂h):
//   G += C_t·dpre_t;  dΔ_t = Σ_n G·(A·ā·h_{t-1} + B_t·u_t);  dB_t = Σ_d G·Δ·u;  du_t += Σ_n G·Δ·B_t;
//   dC_t = Σ_d h_t·dpre_t;  G ← ā·G,   with ā = exp(Δ_t·A), dpre = dy·silu(z), pre = C·h + D·u.
// `state0` is the initial state (read only); dstate (may be null) receives ∂L/∂state0. Sums over
// channels (dB, dC) are reduced in a fixed order: the result does not depend on the thread count.
struct ScanGrads {
  const float* dy; int64_t lddy;    // [T, d_inner] ∂L/∂y
  float* du; int64_t lddu;          // [T, d_inner] written
  float* ddt; int64_t ldddt;        // [T, d_inner] ∂L/∂dt (before the bias: the same as after it), written
  float* dz; int64_t lddz;          // [T, d_inner] written
  float* db; int64_t lddb;          // [T, d_state] written
  float* dc; int64_t lddc;          // [T, d_state] written
  float* dstate;                    // [d_inner, d_state] or null
};
void selective_scan_back(const ScanArgs& args, const float* state0, const ScanGrads& g);

}  // namespace jamba::cpu
