// Mamba's causal depthwise conv1d with SiLU, for prefill and for the decode step, and its
// backward with respect to the inputs and the initial state. A thread owns
// one channel over a tile of time steps: its d_conv taps live in registers and the window slides
// along the tile, so each input is read once per tile (plus d_conv - 1 of overlap). Consecutive
// threads are consecutive channels, so every load and store is coalesced across the warp.
#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

using limits::kMaxConv;
static_assert(limits::kMinConv == 2 && kMaxConv == 8, "the switch in the launcher lists 2 to 8");
constexpr int kTile = 64;      // time steps per thread
constexpr int kChannels = 128; // channels per block

template <typename TI, typename TO, int K>
__global__ void conv_prefill_kernel(const TI* __restrict__ x, int64_t ldx, int64_t t_len, int64_t channels,
                                    const float* __restrict__ w, const float* __restrict__ bias,
                                    const float* __restrict__ state, TO* __restrict__ out, int64_t ldo) {
  const int64_t c = int64_t(blockIdx.x) * kChannels + threadIdx.x;
  const int64_t t0 = int64_t(blockIdx.y) * kTile;
  if (c >= channels || t0 >= t_len) return;
  float tap[K];
#pragma unroll
  for (int j = 0; j < K; ++j) tap[j] = w[c * K + j];
  const float b = bias ? bias[c] : 0.f;
  // win[K - 1] is the newest input; the older ones come from x or, before t = 0, from the state.
  float win[K];
#pragma unroll
  for (int j = 0; j < K - 1; ++j) {
    const int64_t t = t0 - (K - 1) + j;
    win[j] = t >= 0 ? to_f32(x[t * ldx + c]) : state[c * (K - 1) + (K - 1 + t)];
  }
  const int64_t t1 = min(t_len, t0 + kTile);
  for (int64_t t = t0; t < t1; ++t) {
    win[K - 1] = to_f32(x[t * ldx + c]);
    float acc = b;
#pragma unroll
    for (int j = 0; j < K; ++j) acc += tap[j] * win[j];
    out[t * ldo + c] = from_f32<TO>(silu(acc));
#pragma unroll
    for (int j = 0; j < K - 1; ++j) win[j] = win[j + 1];
  }
}

// After the conv: the last K - 1 inputs become the state. One thread per channel walks forward,
// so an old state value is read before its slot is overwritten.
template <typename TI>
__global__ void conv_state_kernel(const TI* __restrict__ x, int64_t ldx, int64_t t_len, int64_t channels, int km1,
                                  float* __restrict__ state) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  float* st = state + c * km1;
  for (int j = 0; j < km1; ++j) {
    const int64_t t = t_len + j;  // index in [old state ; x]
    st[j] = t < km1 ? st[t] : to_f32(x[(t - km1) * ldx + c]);
  }
}

template <typename TI, typename TO, int K>
__global__ void conv_update_kernel(const TI* __restrict__ x, int64_t ldx, int64_t batch, int64_t channels,
                                   const float* __restrict__ w, const float* __restrict__ bias, float* __restrict__ pool,
                                   const int32_t* __restrict__ slot, TO* __restrict__ out, int64_t ldo) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t s = blockIdx.y;
  if (c >= channels || s >= batch) return;
  float* st = pool + (int64_t(slot[s]) * channels + c) * (K - 1);
  const float xin = to_f32(x[s * ldx + c]);
  float acc = bias ? bias[c] : 0.f;
#pragma unroll
  for (int j = 0; j < K - 1; ++j) acc += w[c * K + j] * st[j];
  acc += w[c * K + K - 1] * xin;
#pragma unroll
  for (int j = 0; j < K - 2; ++j) st[j] = st[j + 1];
  st[K - 2] = xin;
  out[s * ldo + c] = from_f32<TO>(silu(acc));
}

// The backward: out[s] = silu(pre[s]), pre[s] = b + Σ_j w[j] · x[s − (K−1) + j], so input t (t < 0:
// the state's) gets Σ_j w[j] · dy[s] · silu'(pre[s]) over s = t + K − 1 − j in [0, t_len). A
// thread owns one (channel, t) and recomputes the K pre-activations it needs (K² ≤ 64 products).
template <typename TI, int K>
__global__ void conv_back_kernel(const TI* __restrict__ x, int64_t ldx, int64_t t_len, int64_t channels,
                                 const float* __restrict__ w, const float* __restrict__ bias, const float* __restrict__ state0,
                                 const float* __restrict__ dy, int64_t lddy, float* __restrict__ dx, int64_t lddx,
                                 float* __restrict__ dstate) {
  const int64_t c = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  const int64_t t = int64_t(blockIdx.x) - (K - 1);  // −(K−1) … t_len − 1 (x: no 65,535 bound on sequence length)
  if (c >= channels) return;
  auto input = [&](int64_t i) { return i >= 0 ? to_f32(x[i * ldx + c]) : state0 ? state0[c * (K - 1) + (K - 1) + i] : 0.f; };
  float tap[K];
#pragma unroll
  for (int j = 0; j < K; ++j) tap[j] = w[c * K + j];
  const float b = bias ? bias[c] : 0.f;
  float g = 0.f;
#pragma unroll
  for (int j = 0; j < K; ++j) {
    const int64_t s = t + (K - 1 - j);
    if (s < 0 || s >= t_len) continue;
    float pre = b;
#pragma unroll
    for (int i = 0; i < K; ++i) pre += tap[i] * input(s - (K - 1) + i);
    g += tap[j] * dy[s * lddy + c] * dsilu(pre);
  }
  if (t >= 0) dx[t * lddx + c] = g;
  else if (dstate) dstate[c * (K - 1) + (K - 1) + t] = g;
}

template <int K, typename TI, typename TO>
void prefill(const void* x, int64_t ldx, int64_t t_len, int64_t channels, const float* w, const float* bias,
             float* state, void* out, int64_t ldo, cudaStream_t s) {
  const dim3 grid(blocks_for(channels, kChannels), blocks_for(t_len, kTile));
  conv_prefill_kernel<TI, TO, K><<<grid, kChannels, 0, s>>>(static_cast<const TI*>(x), ldx, t_len, channels, w, bias, state,
                                                             static_cast<TO*>(out), ldo);
  conv_state_kernel<TI><<<blocks_for(channels, 256), 256, 0, s>>>(static_cast<const TI*>(x), ldx, t_len, channels, K - 1, state);
}

template <int K, typename TI, typename TO>
void update(const void* x, int64_t ldx, int64_t batch, int64_t channels, const float* w, const float* bias, float* pool,
            const int32_t* slot, void* out, int64_t ldo, cudaStream_t s) {
  const dim3 grid(blocks_for(channels, 256), unsigned(batch));
  conv_update_kernel<TI, TO, K><<<grid, 256, 0, s>>>(static_cast<const TI*>(x), ldx, batch, channels, w, bias, pool, slot,
                                                      static_cast<TO*>(out), ldo);
}

// Calls f(std::integral_constant<int, K>, Tag<TI>, Tag<TO>) for the runtime width and types.
template <typename F>
void dispatch(int d_conv, DType ti, DType to, F&& f) {
  auto by_types = [&](auto k) {
    if (ti == DType::BF16 && to == DType::BF16) f(k, Tag<bf16>{}, Tag<bf16>{});
    else if (ti == DType::BF16) f(k, Tag<bf16>{}, Tag<float>{});
    else if (to == DType::BF16) f(k, Tag<float>{}, Tag<bf16>{});
    else f(k, Tag<float>{}, Tag<float>{});
  };
  switch (d_conv) {
    case 2: by_types(std::integral_constant<int, 2>{}); break;
    case 3: by_types(std::integral_constant<int, 3>{}); break;
    case 4: by_types(std::integral_constant<int, 4>{}); break;
    case 5: by_types(std::integral_constant<int, 5>{}); break;
    case 6: by_types(std::integral_constant<int, 6>{}); break;
    case 7: by_types(std::integral_constant<int, 7>{}); break;
    case 8: by_types(std::integral_constant<int, kMaxConv>{}); break;
    default: fail("invalid_argument", "the CUDA conv1d supports d_conv 2 to 8, not " + std::to_string(d_conv));
  }
}

}  // namespace

void causal_conv1d_silu(const void* x, int64_t ldx, DType x_type, int64_t t_len, int64_t channels, const float* w,
                        int d_conv, const float* bias, float* state, void* out, int64_t ldo, DType out_type,
                        cudaStream_t stream) {
  if (t_len == 0) return;
  dispatch(d_conv, x_type, out_type, [&](auto k, auto ti, auto to) {
    prefill<decltype(k)::value, typename decltype(ti)::type, typename decltype(to)::type>(x, ldx, t_len, channels, w, bias, state,
                                                                                          out, ldo, stream);
  });
  JAMBA_CUDA_LAUNCHED("causal_conv1d_silu");
}

void causal_conv1d_silu_back(const void* x, int64_t ldx, DType x_type, int64_t t_len, int64_t channels, const float* w,
                             int d_conv, const float* bias, const float* state0, const float* dy, int64_t lddy, float* dx,
                             int64_t lddx, float* dstate, cudaStream_t stream) {
  if (t_len == 0) return;
  dispatch(d_conv, x_type, DType::F32, [&](auto k, auto ti, auto) {
    using TI = typename decltype(ti)::type;
    constexpr int K = decltype(k)::value;
    const dim3 grid(unsigned(t_len + K - 1), blocks_for(channels, kChannels));
    conv_back_kernel<TI, K><<<grid, kChannels, 0, stream>>>(static_cast<const TI*>(x), ldx, t_len, channels, w, bias, state0, dy, lddy,
                                                            dx, lddx, dstate);
  });
  JAMBA_CUDA_LAUNCHED("causal_conv1d_silu_back");
}

void causal_conv1d_update_silu(const void* x, int64_t ldx, DType x_type, int64_t batch, int64_t channels, const float* w,
                               int d_conv, const float* bias, float* state_pool, const int32_t* slot, void* out,
                               int64_t ldo, DType out_type, cudaStream_t stream) {
  if (batch == 0) return;
  dispatch(d_conv, x_type, out_type, [&](auto k, auto ti, auto to) {
    update<decltype(k)::value, typename decltype(ti)::type, typename decltype(to)::type>(x, ldx, batch, channels, w, bias,
                                                                                         state_pool, slot, out, ldo, stream);
  });
  JAMBA_CUDA_LAUNCHED("causal_conv1d_update_silu");
}

}  // namespace jamba::cuda
