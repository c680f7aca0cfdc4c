// The CUDA kernels' host entry points: plain C++ (no CUDA syntax), so the N-API glue and the
// executor include it without nvcc. Every pointer is device memory; every call is asynchronous
// on `stream` and checks its launch. `DType` picks the storage of activations and weights
// (float32 or bf16); arithmetic is float32 everywhere, states are float32.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace jamba::cuda {

enum class DType { F32, BF16 };

// The shapes the kernels support, in one place: the launchers refuse anything else, and a model
// is checked against them once at load (lib/cuda-support.ts, as ggml's supports_op), before any
// weight is uploaded.
namespace limits {
constexpr int kMaxDState = 32;     // selective scan and state update: states per channel
constexpr int kMinConv = 2;        // causal conv1d taps
constexpr int kMaxConv = 8;
constexpr int kMaxHeadDim = 128;   // flash prefill (decode attention takes up to 256)
constexpr int kMaxGroup = 16;      // query heads per KV head
constexpr int kMaxExperts = 1024;  // routing
}  // namespace limits

// h[r] += delta[r] (if delta), then out[r] = h[r] / rms(h[r]) * weight: the residual add of the
// previous sub-layer fused with the next norm. h is float32 (the residual stream, or a slice of a
// float32 projection normalised in place); ld* are row strides in elements.
void rmsnorm_residual(float* h, int64_t ldh, const void* delta, int64_t ldd, DType delta_type, int64_t rows, int64_t cols,
                      const float* weight, float eps, void* out, int64_t ldo, DType out_type, cudaStream_t stream);

// x[r, c] += bias[c] (projection biases).
void add_bias(void* x, int64_t ld, DType type, int64_t rows, int64_t cols, const float* bias, cudaStream_t stream);

// n values uniform in [lo, hi) from a hash of (seed, index): synthetic weights for benchmarks
// of model layouts too large to keep on disk.
void fill_uniform(void* out, DType type, int64_t n, uint64_t seed, float lo, float hi, cudaStream_t stream);

// n float32 values to bf16.
void to_bf16(const float* x, int64_t n, void* out, cudaStream_t stream);

// Causal depthwise conv over `t_len` new inputs of one sequence, then SiLU. x[t, c] at
// x + t * ldx; w [channels, d_conv]; state [channels, d_conv - 1] holds the inputs before x and
// holds the last d_conv - 1 inputs on return. out [t_len, channels] (row stride ldo).
void causal_conv1d_silu(const void* x, int64_t ldx, DType x_type, int64_t t_len, int64_t channels, const float* w,
                        int d_conv, const float* bias, float* state, void* out, int64_t ldo, DType out_type,
                        cudaStream_t stream);

// The decode step of the conv for `batch` sequences: x[s, c] one new input each, states from a
// pool (state_pool + slot[s] * channels * (d_conv - 1)).
void causal_conv1d_update_silu(const void* x, int64_t ldx, DType x_type, int64_t batch, int64_t channels, const float* w,
                               int d_conv, const float* bias, float* state_pool, const int32_t* slot, void* out,
                               int64_t ldo, DType out_type, cudaStream_t stream);

struct ScanArgs {
  const void* u; int64_t ldu;    // [T, d_inner] conv output
  const void* dt; int64_t lddt;  // [T, d_inner] dt_proj output without bias
  const void* b; int64_t ldb;    // [T, d_state]
  const void* c; int64_t ldc;    // [T, d_state]
  const void* z; int64_t ldz;    // [T, d_inner] gate
  DType in_type;
  const float* a;                // [d_inner, d_state], already -exp(A_log)
  const float* d_skip;           // [d_inner]
  const float* dt_bias;          // [d_inner]
  void* y; int64_t ldy; DType out_type;
  int64_t t_len, d_inner, d_state;
};

// Prefill of one sequence: the recurrence over t_len steps from `state` ([d_inner, d_state],
// float32), which holds the final state on return; y gets (C·h + D·u) · silu(z).
void selective_scan(const ScanArgs& args, float* state, cudaStream_t stream);

// Mamba's decode step after x_proj, in one launch for `batch` sequences (row s of p, u, z, y is
// sequence s, its state at state_pool + slot[s] * d_inner * d_state): the dt, B and C RMSNorms of
// the x_proj row p = [dt | B | C] (float32), dt_proj (weights [d_inner, dt_rank] in `type`), then
// the state update h = exp(softplus(dt + bias)·A)·h + dt·B·u and y = (C·h + D·u) · silu(z). The
// intermediates stay in float32 registers and shared memory.
struct MambaDecodeArgs {
  const float* p; int64_t ldp;
  const float* dt_norm; const float* b_norm; const float* c_norm; float eps;
  const void* dt_proj;           // [d_inner, dt_rank]
  const float* dt_bias;          // [d_inner]
  const float* a;                // [d_inner, d_state], already -exp(A_log)
  const float* d_skip;           // [d_inner]
  const void* u; int64_t ldu;    // conv output
  const void* z; int64_t ldz;    // gate
  void* y; int64_t ldy;
  DType type;                    // of dt_proj, u, z and y
  int64_t d_inner, d_state, dt_rank;
};
void mamba_decode_step(const MambaDecodeArgs& args, float* state_pool, const int32_t* slot, int64_t batch, cudaStream_t stream);

// MoE routing on the device, with no host synchronisation: softmax of each token's router
// logits (float32), its top-k experts and their probabilities (in descending order, as the CPU
// backend), then tokens grouped by expert: counts[e], offsets[e] (E + 1 entries, exclusive
// scan), the experts that received rows in ascending order (active[0..], then -1 up to E
// entries: the skinny GEMM's grid runs over these only) and, for each (token, slot), its row in
// the grouped order (row_of[t * k + j]), the inverse (token_of_row) and the routing weight of
// each row (row_weight, for the second expert GEMM's epilogue). Rows of one expert are
// contiguous; their order within the group is not fixed, and never matters: each row is
// computed alone and combined per token in slot order.
void moe_route(const float* logits, int64_t tokens, int experts, int k, int32_t* idx, float* weight,
               int32_t* counts, int32_t* offsets, int32_t* active, int32_t* row_of, int32_t* token_of_row,
               float* row_weight, cudaStream_t stream);

// Weights of a grouped GEMM: E matrices [n, k] row-major, bf16, or int8 with one float32 scale
// per output row (ExpertsInt8: int8 values are widened inside the inner loop and the scale is
// applied after the float32 accumulation).
struct GroupedWeights {
  const void* w;          // [E, n, k]
  const float* scale;     // [E, n] for int8, else null
  bool int8;
  int64_t n, k;
};

// For each expert e, out[rows of e] = a[rows of e] · W_e^T (· row_scale[row] when given: the
// routing weight, fused into the second expert GEMM). a [rows, k] bf16 (row stride lda) in the
// grouped order of `offsets` (E + 1 entries, on the device); out [rows, n] bf16 or float32.
// `max_rows` bounds the total rows (tokens × top-k) and sizes the grid without reading offsets.
// With k and lda multiples of 8 tiles are staged with 16-byte loads; otherwise element by element.
void grouped_gemm(const void* a, int64_t lda, const GroupedWeights& w, const int32_t* offsets, int experts,
                  int64_t max_rows, const float* row_scale, void* out, int64_t ldo, DType out_type, cudaStream_t stream);

// The most rows per weight matrix for which skinny_gemm is the executor's choice (decode and
// small batched decode); above it, grouped_gemm's tensor-core tiles.
constexpr int64_t kSkinnyRows = 16;

// The same product as grouped_gemm for a few rows per matrix, as a weight stream: the cost is
// reading each active expert's weights once. `active` lists the experts with rows (from
// moe_route; may be null for one matrix), `max_rows` bounds all rows and `max_group_rows` the
// rows of one expert (kernels are sized for it; more rows take more passes). With `silu_gate`,
// W is a merged gate|up matrix [n = 2·inner, k] and out[r, j] = silu(g[r, j]) · u[r, j], [rows,
// inner]. A row's result does not depend on which or how many other rows share the launch.
void skinny_gemm(const void* a, int64_t lda, const GroupedWeights& w, const int32_t* offsets, const int32_t* active,
                 int experts, int64_t max_rows, int64_t max_group_rows, const float* row_scale, bool silu_gate, void* out,
                 int64_t ldo, DType out_type, cudaStream_t stream);

// out[t] = Σ_j rows[row_of[t * k + j]] over the k slots in slot order (deterministic), added to
// the float32 residual stream h when `accumulate`, else stored.
void moe_combine(const void* rows, DType rows_type, int64_t n, const int32_t* row_of, int64_t tokens, int k, float* h,
                 bool accumulate, cudaStream_t stream);

// The rows of `src` in the grouped order: dst[r] = src[token_of_row[r]] (see moe_route).
void gather_rows(const void* src, int64_t lds, DType type, const int32_t* token_of_row, int64_t rows, int64_t cols,
                 void* dst, int64_t ldd, cudaStream_t stream);

// out[r, j] = silu(gu[r, j]) · gu[r, inner + j]: the SiLU gate of a merged gate|up product.
void silu_gate(const void* gu, int64_t ldg, DType type, int64_t rows, int64_t inner, void* out, int64_t ldo,
               cudaStream_t stream);

// Embedding rows: out[i] = table[ids[i]] (float32 residual stream).
void embed_rows(const void* table, DType table_type, int64_t hidden, const int32_t* ids, int64_t n, float* out,
                cudaStream_t stream);

// Attention over KV caches laid out per sequence slot as [position, kv_heads, head_dim] bf16 at
// k_pool / v_pool + slot[s] * kv_stride. Grouped-query heads: query head h reads KV head
// h / (heads / kv_heads). Scale is 1/sqrt(head_dim) unless given.
struct AttentionArgs {
  const void* q; int64_t ldq; DType q_type;  // [tokens, heads * head_dim]
  const void* k_pool; const void* v_pool; int64_t kv_stride;
  const int32_t* slot;                       // per sequence
  const int32_t* past;                       // per sequence: positions cached before this pass
  void* out; int64_t ldo; DType out_type;    // [tokens, heads * head_dim]
  int heads, kv_heads, head_dim;
  float scale;
};

// Decode: one query token per sequence (token s of q belongs to sequence s), attending to
// past[s] + 1 positions (its own key and value already appended). Split-KV: each sequence's keys
// are cut into chunks handled by separate blocks, whose partial softmax results a second kernel
// merges exactly (max-rescaled). Each sequence's split count follows from its own length
// (rules::decode_splits, about one per 256 keys), so its result does not depend on the batch;
// `partial` is workspace of decode_attention_workspace() bytes.
size_t decode_attention_workspace(int64_t batch, int heads, int head_dim);
void decode_attention(const AttentionArgs& a, int64_t batch, void* partial, cudaStream_t stream);

// Prefill of one sequence: `t_len` query tokens at positions past[0] .. past[0] + t_len - 1,
// causal, keys and values already appended to the cache. Flash attention: key blocks streamed
// through shared memory, float32 online softmax, bf16 tensor-core products (mma.sync m16n8k16).
void prefill_attention(const AttentionArgs& a, int64_t t_len, cudaStream_t stream);

// Appends t_len rows of keys and values (from the merged q|k|v projection output) to the cache.
void append_kv(const void* qkv, int64_t ldqkv, DType type, int64_t k_col, int64_t v_col, int64_t t_len, int kv_width,
               void* k_pool, void* v_pool, int64_t kv_stride, const int32_t* slot, const int32_t* past, int64_t batch,
               const int32_t* token_offsets, cudaStream_t stream);

// Sampling on the device: per row of logits [rows, vocab] float32, greedy (temperature 0) or
// temperature / top-k / top-p (sampling.cu: one pass with Gumbel noise where no cut is asked) from
// a counter-based generator (Philox keyed by the row's seed,
// counted by its step, so a generation's draws do not depend on what it is batched with), so
// logits never cross to the host during generation. `args` holds one entry per row, on the
// device; out[r] is the chosen id.
struct SampleArgs {
  float temperature; int top_k; float top_p; float min_p;
  uint64_t seed; uint64_t step;
};
// `workspace` holds sample_workspace(rows) bytes (the one-pass path's per-block bests).
size_t sample_workspace(int64_t rows);
void sample(const float* logits, int64_t rows, int64_t vocab, const SampleArgs* args, int32_t* out, void* workspace,
            cudaStream_t stream);

// Grammar masks on the device: logits[r, i] = −∞ where bit i of row r's mask is clear. `bits` is
// [rows, ceil(vocab / 32)] 32-bit words (xgrammar's bitmask layout), uploaded per step.
void mask_logits(float* logits, int64_t rows, int64_t vocab, const uint32_t* bits, cudaStream_t stream);

// Quantizes E × n rows of k bf16 weights to int8 with one float32 scale per row, on the device
// (the same rule as the CPU backend: scale = max|w| / 127, q = round-half-even(w / scale)).
void quantize_int8_rows(const void* w, int64_t rows, int64_t k, int8_t* q, float* scale, cudaStream_t stream);

// ---------------------------------------------------------------- backward
// Training through the frozen model: gradients with respect to the inputs of each op (never the
// weights), float32 throughout; the bf16 operands of the products are the forward's storage.

// dx[rows of e] (+)= dy[rows of e] · W_e (· row_scale[row]): the input gradient of grouped_gemm's
// product, on the same tensor-core tiles; dy bf16 [rows, w.n], dx float32 [rows, w.k]. Int8
// weights are widened in the k loop as in the forward, their scales applied to dy's tile.
void grouped_gemm_dx(const void* dy, int64_t lddy, const GroupedWeights& w, const int32_t* offsets, int experts,
                     int64_t max_rows, const float* row_scale, float* dx, int64_t lddx, bool accumulate, cudaStream_t stream);

// RMSNorm's input gradient (x float32, the norm's input), stored or added to dx.
void rmsnorm_back(const float* x, int64_t ldx, int64_t rows, int64_t cols, const float* weight, float eps, const float* dy,
                  int64_t lddy, float* dx, int64_t lddx, bool accumulate, cudaStream_t stream);

// The causal conv1d + SiLU's gradient with respect to its t_len inputs (dx) and to the state it
// started from (dstate [channels, d_conv − 1], or null); state0 null is a zero state.
void causal_conv1d_silu_back(const void* x, int64_t ldx, DType x_type, int64_t t_len, int64_t channels, const float* w,
                             int d_conv, const float* bias, const float* state0, const float* dy, int64_t lddy, float* dx,
                             int64_t lddx, float* dstate, cudaStream_t stream);

// The selective scan's gradients (ScanArgs as for selective_scan; y is not read). dy is the
// gradient of the gated output; ddt is with respect to dt before the bias.
struct ScanGrads {
  const float* dy; int64_t lddy;
  float* du; int64_t lddu;
  float* ddt; int64_t ldddt;
  float* dz; int64_t lddz;
  float* db; int64_t lddb;
  float* dc; int64_t lddc;
  float* dstate;                 // [d_inner, d_state] or null
};
size_t selective_scan_back_workspace(int64_t t_len, int64_t d_inner, int64_t d_state);
// state0: the state before the sequence ([d_inner, d_state]; null: zero). `workspace` holds
// selective_scan_back_workspace() bytes.
void selective_scan_back(const ScanArgs& args, const float* state0, const ScanGrads& g, void* workspace, cudaStream_t stream);

// Causal attention's gradients for one sequence of t_len query rows at positions past … past +
// t_len − 1, keys and values [past + t_len, kv_heads · head_dim] bf16 (the prefix, then these
// rows'). dq [t_len, heads · head_dim]; dk, dv [past + t_len, kv_heads · head_dim], every
// position; lse and delta are workspace of t_len · heads floats each.
struct AttentionBackArgs {
  const void* q; int64_t ldq;
  const void* k; const void* v;
  const float* dout; int64_t lddout;
  float* dq; int64_t lddq;
  float* dk; float* dv; int64_t lddkv;
  float* lse; float* delta;
  int64_t t_len, past;
  int heads, kv_heads, head_dim;
  float scale;
};
void attention_back(const AttentionBackArgs& a, cudaStream_t stream);

// The SwiGLU gate's backward: from gu = [g | u] (bf16, as silu_gate read it) and da, the merged
// [dg | du] rows (bf16 [rows, 2·inner]).
void silu_gate_back(const void* gu, int64_t ldg, const float* da, int64_t ldd, int64_t rows, int64_t inner, void* dgu, int64_t ldo,
                    cudaStream_t stream);
// dweight[r] = dy[token_of_row[r]] · y[r]: the gradient of each grouped row's routing weight (y
// the expert's output before the weight, float32 [rows, cols]).
void routing_weight_grad(const float* dy, const float* y, const int32_t* token_of_row, int64_t rows, int64_t cols, float* dweight,
                         cudaStream_t stream);
// The router logits' gradient (bf16 [tokens, experts]) through the softmax of all experts, from
// moe_route's idx and row_of and the rows' dweight.
void router_back(const float* logits, const int32_t* idx, const int32_t* row_of, const float* dweight, int64_t tokens, int experts,
                 int k, void* dlogits, cudaStream_t stream);

// Per row of logits [rows, vocab]: loss[r] = weight[r] · (logsumexp − logit[id]) and the logits'
// gradient weight · (softmax − onehot), bf16 [rows, vocab].
void cross_entropy_rows(const float* logits, int64_t rows, int64_t vocab, const int32_t* ids, const float* weights, float* loss,
                        void* dlogits, cudaStream_t stream);
// dst[rows[i]] += src[i] for i in order (rows may repeat), [n, cols] onto [*, cols].
void scatter_add_rows(const float* src, int64_t n, int64_t cols, const int32_t* rows, float* dst, cudaStream_t stream);

}  // namespace jamba::cuda
