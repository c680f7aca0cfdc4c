// Mamba's selective scan (prefill), with Jamba's epilogue fused: softplus(dt + bias), the D skip
// and the SiLU(z) gate; and the decode step, which also takes in the dt/B/C norms and dt_proj.
// The recurrence is sequential in time, so
// parallelism comes from channels and from the state dimension: a thread owns one (channel, n)
// pair and keeps h[channel, n] in a register in float32 for the whole sequence; y = C·h is a
// shuffle reduction across the lanes of a channel. Inputs are staged through shared memory in
// chunks of time steps (coalesced loads, softplus and SiLU applied once per element), and B and C
// rows, shared by every channel, are read once per block and chunk.
//
// The backward (training through the frozen model) keeps the same thread layout. States are
// never stored per token: a first pass writes h at every kBackChunk-th step, then the chunks are
// taken last to first, each rebuilt forward from its checkpoint into registers and walked in
// reverse with the state's gradient carried across steps. Sums over the state (du, dΔ) are
// shuffles within a channel's lanes; sums over channels (dB, dC) go through shared memory to one
// partial per block and step, added up in block order by a second kernel (no atomics: the same
// bits every run).
#include <algorithm>
#include <type_traits>

#include "common.cuh"
#include "kernels.h"

namespace jamba::cuda {
namespace {

constexpr int kChunk = 32;  // time steps staged per round

// Channels per block: 512 threads, at most 64 channels (the staging buffers stay under 48 KB).
template <int NS> __host__ __device__ constexpr int channels_per_block() { return 512 / NS < 64 ? 512 / NS : 64; }

template <typename TI, typename TO, int NS>
__global__ void __launch_bounds__(channels_per_block<NS>() * NS) scan_kernel(ScanArgs a, float* __restrict__ state) {
  constexpr int CH = channels_per_block<NS>();
  constexpr int kThreads = CH * NS;
  __shared__ float s_u[kChunk][CH], s_dt[kChunk][CH], s_g[kChunk][CH], s_y[kChunk][CH];
  __shared__ float s_b[kChunk][NS], s_c[kChunk][NS];
  const int N = int(a.d_state);
  const int ch = threadIdx.x / NS, n = threadIdx.x % NS;
  const int64_t c0 = int64_t(blockIdx.x) * CH, c = c0 + ch;
  const bool live = c < a.d_inner && n < N;
  float* st = state + c * N + n;
  float h = live ? *st : 0.f;
  const float A = live ? a.a[c * N + n] : 0.f;
  const float D = c < a.d_inner ? a.d_skip[c] : 0.f;
  const TI* U = static_cast<const TI*>(a.u);
  const TI* DT = static_cast<const TI*>(a.dt);
  const TI* Z = static_cast<const TI*>(a.z);
  const TI* B = static_cast<const TI*>(a.b);
  const TI* C = static_cast<const TI*>(a.c);
  TO* Y = static_cast<TO*>(a.y);

  for (int64_t t0 = 0; t0 < a.t_len; t0 += kChunk) {
    const int steps = a.t_len - t0 < kChunk ? int(a.t_len - t0) : kChunk;
    __syncthreads();  // the previous chunk's s_y is stored
    for (int i = threadIdx.x; i < kChunk * CH; i += kThreads) {
      const int tt = i / CH, cc = i % CH;
      const int64_t cg = c0 + cc, r = t0 + tt;
      if (tt < steps && cg < a.d_inner) {
        s_u[tt][cc] = to_f32(U[r * a.ldu + cg]);
        s_dt[tt][cc] = softplus(to_f32(DT[r * a.lddt + cg]) + a.dt_bias[cg]);
        s_g[tt][cc] = silu(to_f32(Z[r * a.ldz + cg]));
      }
    }
    for (int i = threadIdx.x; i < kChunk * NS; i += kThreads) {
      const int tt = i / NS, nn = i % NS;
      const int64_t r = t0 + tt;
      const bool ok = tt < steps && nn < N;
      s_b[tt][nn] = ok ? to_f32(B[r * a.ldb + nn]) : 0.f;
      s_c[tt][nn] = ok ? to_f32(C[r * a.ldc + nn]) : 0.f;
    }
    __syncthreads();
    for (int tt = 0; tt < steps; ++tt) {
      const float u = s_u[tt][ch], dt = s_dt[tt][ch];
      h = expf(dt * A) * h + dt * s_b[tt][n] * u;
      const float y = warp_sum<NS>(h * s_c[tt][n]);
      if (n == 0) s_y[tt][ch] = (y + D * u) * s_g[tt][ch];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < kChunk * CH; i += kThreads) {
      const int tt = i / CH, cc = i % CH;
      const int64_t cg = c0 + cc;
      if (tt < steps && cg < a.d_inner) Y[(t0 + tt) * a.ldy + cg] = from_f32<TO>(s_y[tt][cc]);
    }
  }
  if (live) *st = h;
}

// The decode step fused (MambaDecodeArgs): a block owns CH channels, NS lanes per channel as in
// scan_kernel, for kDecodeSequences sequences of the batch (grid y), kDecodeGroup at a time, so
// that its dt_proj rows come from L2 once per block and from L1 after (review §3, "Mamba decode
// step batched": a block per sequence read them batch times; one block for the whole batch would
// chain every sequence's latency). For each group the block normalises the sequences'
// x_proj rows into shared memory (a warp per segment), every lane issues its states, u and z loads
// for the group before any dot product, then each channel's lanes take the dt_proj dot product
// (16-byte loads of bf16 rows when dt_rank allows) and update the channel's states. A sequence's
// arithmetic is the same whatever else is in the batch.
constexpr int kDecodeGroup = 2;      // sequences whose loads are in flight together (registers)
constexpr int kDecodeSequences = 4;  // sequences per block

template <typename T, int NS>
__global__ void __launch_bounds__(channels_per_block<NS>() * NS, 2) decode_step_kernel(MambaDecodeArgs a, float* __restrict__ pool,
                                                                                   const int32_t* __restrict__ slot, int64_t batch,
                                                                                   int per_group) {
  constexpr int CH = channels_per_block<NS>();
  constexpr int G = kDecodeGroup;  // per_group ≤ G
  extern __shared__ float rows[];  // G × (dt_rank + 2 d_state): the normalised [dt | B | C] of each sequence
  __shared__ float inv[G][3];
  const int R = int(a.dt_rank), N = int(a.d_state), P = R + 2 * N;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, warps = blockDim.x / 32;
  const int ch = threadIdx.x / NS, n = threadIdx.x % NS;
  const int64_t c = int64_t(blockIdx.x) * CH + ch;
  const bool channel = c < a.d_inner, live = channel && n < N;
  // What does not depend on the sequence, loaded once.
  const T* W = static_cast<const T*>(a.dt_proj) + (channel ? c : 0) * R;
  const float A = live ? a.a[c * N + n] : 0.f, bias = channel ? a.dt_bias[c] : 0.f, D = channel ? a.d_skip[c] : 0.f;
  bool vec = false;
  if constexpr (std::is_same_v<T, bf16>) vec = R % 8 == 0;  // rows of 16-byte chunks (cudaMalloc'd, so aligned)

  const int64_t first = int64_t(blockIdx.y) * kDecodeSequences, last = min(batch, first + kDecodeSequences);
  for (int64_t s0 = first; s0 < last; s0 += per_group) {
    const int group = last - s0 < per_group ? int(last - s0) : per_group;
    __syncthreads();  // the previous group is done with `rows`
    for (int i = threadIdx.x; i < group * P; i += blockDim.x) rows[i] = a.p[(s0 + i / P) * a.ldp + i % P];
    // This group's per-sequence loads, in flight while the rows are normalised.
    float h[G], u[G], z[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const int64_t q = s0 + g;
      const bool seq = g < group;
      h[g] = live && seq ? pool[int64_t(slot[q]) * a.d_inner * N + c * N + n] : 0.f;
      u[g] = channel && seq ? to_f32(static_cast<const T*>(a.u)[q * a.ldu + c]) : 0.f;
      z[g] = channel && seq && n == 0 ? to_f32(static_cast<const T*>(a.z)[q * a.ldz + c]) : 0.f;
    }
    __syncthreads();
    for (int task = warp; task < 3 * group; task += warps) {
      const int g = task / 3, seg = task % 3;
      const int from = seg == 0 ? 0 : seg == 1 ? R : R + N, len = seg == 0 ? R : N;
      const float* r = rows + g * P + from;
      float ss = 0.f;
      for (int i = lane; i < len; i += 32) ss += r[i] * r[i];
      ss = warp_sum(ss);
      if (lane == 0) inv[g][seg] = rsqrtf(ss / float(len) + a.eps);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < group * P; i += blockDim.x) {
      const int g = i / P, j = i % P;
      const float* w = j < R ? a.dt_norm + j : j < R + N ? a.b_norm + (j - R) : a.c_norm + (j - R - N);
      rows[i] *= inv[g][j < R ? 0 : j < R + N ? 1 : 2] * *w;
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < G; ++g) {
      if (g >= group) break;  // the same for the whole block
      const int64_t q = s0 + g;
      const float* row = rows + g * P;
      // dt_proj row c · dt, split across the channel's lanes (a fixed order for a given dt_rank).
      float dot = 0.f;
      if (channel) {
        if (vec) {
#pragma unroll 1
          for (int r = n * 8; r < R; r += NS * 8) {
            float w8[8];
            bf16x8_to_f32(*reinterpret_cast<const uint4*>(W + r), w8);
#pragma unroll
            for (int j = 0; j < 8; ++j) dot += row[r + j] * w8[j];
          }
        } else {
          for (int r = n; r < R; r += NS) dot += row[r] * to_f32(W[r]);
        }
      }
      dot = warp_sum<NS>(dot);
      // Every lane stays to the last shuffle (a warp may hold channels past d_inner).
      const float dt = channel ? softplus(dot + bias) : 0.f;
      float hg = h[g];
      if (live) hg = expf(dt * A) * hg + dt * row[R + n] * u[g];
      const float y = warp_sum<NS>(live ? hg * row[R + N + n] : 0.f);
      if (live) pool[int64_t(slot[q]) * a.d_inner * N + c * N + n] = hg;
      if (channel && n == 0) static_cast<T*>(a.y)[q * a.ldy + c] = from_f32<T>((y + D * u[g]) * silu(z[g]));
    }
  }
}

constexpr int kBackChunk = 8;  // steps rebuilt into registers per round of the backward

// Threads per block of the backward (channels_per_block<NS>() channels), and its blocks.
template <int NS> __host__ __device__ constexpr int back_threads() { return channels_per_block<NS>() * NS; }

template <typename TI, int NS>
__global__ void __launch_bounds__(back_threads<NS>()) scan_back_kernel(ScanArgs a, const float* __restrict__ state0, ScanGrads g,
                                                                      float* __restrict__ ckpt, float* __restrict__ part_b,
                                                                      float* __restrict__ part_c) {
  constexpr int CH = channels_per_block<NS>(), kThreads = back_threads<NS>(), L = kBackChunk;
  __shared__ float s_b[L][kThreads], s_c[L][kThreads];
  const int N = int(a.d_state);
  const int ch = threadIdx.x / NS, n = threadIdx.x % NS;
  const int64_t c0 = int64_t(blockIdx.x) * CH, c = c0 + ch, T = a.t_len, blocks = gridDim.x;
  const bool channel = c < a.d_inner, live = channel && n < N;
  const float A = live ? a.a[c * N + n] : 0.f;
  const float D = channel ? a.d_skip[c] : 0.f, bias = channel ? a.dt_bias[c] : 0.f;
  const TI* U = static_cast<const TI*>(a.u);
  const TI* DT = static_cast<const TI*>(a.dt);
  const TI* Z = static_cast<const TI*>(a.z);
  const TI* B = static_cast<const TI*>(a.b);
  const TI* C = static_cast<const TI*>(a.c);
  auto u_at = [&](int64_t t) { return channel ? to_f32(U[t * a.ldu + c]) : 0.f; };
  auto dt_raw = [&](int64_t t) { return channel ? to_f32(DT[t * a.lddt + c]) + bias : 0.f; };
  auto b_at = [&](int64_t t) { return live ? to_f32(B[t * a.ldb + n]) : 0.f; };
  auto c_at = [&](int64_t t) { return live ? to_f32(C[t * a.ldc + n]) : 0.f; };
  float* ck = ckpt + c * N + n;  // + chunk · d_inner · d_state
  const int64_t chunk_stride = a.d_inner * N;

  // Pass 1: h at the start of every chunk.
  float h = live && state0 ? state0[c * N + n] : 0.f;
  for (int64_t t = 0; t < T; ++t) {
    if (t % L == 0 && live) ck[(t / L) * chunk_stride] = h;
    const float dt = softplus(dt_raw(t));
    h = expf(dt * A) * h + dt * b_at(t) * u_at(t);
  }
  // Pass 2: chunks last to first.
  float carry = 0.f;  // ∂L/∂h_t through h_{t+1}
  for (int64_t t0 = (T - 1) / L * L; t0 >= 0; t0 -= L) {
    const int steps = T - t0 < L ? int(T - t0) : L;
    float hist[L + 1];  // hist[i + 1]: h after the chunk's step i; hist[0]: before its first
    hist[0] = live ? ck[(t0 / L) * chunk_stride] : 0.f;
#pragma unroll
    for (int i = 0; i < L; ++i) {
      hist[i + 1] = hist[i];
      if (i < steps) {
        const float dt = softplus(dt_raw(t0 + i));
        hist[i + 1] = expf(dt * A) * hist[i] + dt * b_at(t0 + i) * u_at(t0 + i);
      }
    }
#pragma unroll
    for (int i = L - 1; i >= 0; --i) {
      if (i >= steps) continue;  // the same for the whole block
      const int64_t t = t0 + i;
      const float u = u_at(t), raw = dt_raw(t), dt = softplus(raw), bn = b_at(t), cn = c_at(t);
      const float z = channel ? to_f32(Z[t * a.ldz + c]) : 0.f, dout = channel ? g.dy[t * g.lddy + c] : 0.f;
      const float hcur = hist[i + 1], hprev = hist[i];
      const float y = warp_sum<NS>(cn * hcur) + D * u;  // before the gate
      const float dyy = dout * silu(z);
      const float dh = carry + dyy * cn, decay = expf(dt * A);
      s_c[i][threadIdx.x] = dyy * hcur;
      s_b[i][threadIdx.x] = dh * dt * u;
      const float du = warp_sum<NS>(dh * dt * bn) + D * dyy;
      const float ddelta = warp_sum<NS>(dh * (bn * u + hprev * decay * A));
      if (channel && n == 0) {
        g.dz[t * g.lddz + c] = dout * y * dsilu(z);
        g.du[t * g.lddu + c] = du;
        g.ddt[t * g.ldddt + c] = ddelta * dsoftplus(raw);
      }
      carry = decay * dh;
    }
    __syncthreads();
    // This block's share of dB and dC for the chunk's steps: a sum over its channels, in order.
    for (int j = threadIdx.x; j < L * NS; j += kThreads) {
      const int i = j / NS, nn = j % NS;
      if (i >= steps || nn >= N) continue;
      float sb = 0.f, sc = 0.f;
      for (int q = 0; q < CH; ++q) {
        sb += s_b[i][q * NS + nn];
        sc += s_c[i][q * NS + nn];
      }
      const int64_t at = ((t0 + i) * blocks + blockIdx.x) * N + nn;
      part_b[at] = sb;
      part_c[at] = sc;
    }
    __syncthreads();
  }
  if (live && g.dstate) g.dstate[c * N + n] = carry;
}

// dB[t, n] and dC[t, n]: the blocks' partials added in block order.
__global__ void scan_back_reduce_kernel(const float* __restrict__ part_b, const float* __restrict__ part_c, int64_t blocks, int N,
                                        ScanGrads g) {
  const int64_t t = blockIdx.x;
  const int n = threadIdx.x;
  if (n >= N) return;
  float sb = 0.f, sc = 0.f;
  for (int64_t q = 0; q < blocks; ++q) {
    sb += part_b[(t * blocks + q) * N + n];
    sc += part_c[(t * blocks + q) * N + n];
  }
  g.db[t * g.lddb + n] = sb;
  g.dc[t * g.lddc + n] = sc;
}

// Calls f(std::integral_constant<int, NS>) for the lanes per channel that fit d_state.
template <typename F>
void by_state(int64_t d_state, const char* what, F&& f) {
  if (d_state <= 4) f(std::integral_constant<int, 4>{});
  else if (d_state <= 8) f(std::integral_constant<int, 8>{});
  else if (d_state <= 16) f(std::integral_constant<int, 16>{});
  else if (d_state <= limits::kMaxDState) f(std::integral_constant<int, limits::kMaxDState>{});
  else fail("invalid_argument", std::string(what) + " supports d_state up to " + std::to_string(limits::kMaxDState) + ", not " + std::to_string(d_state));
}

// The backward's workspace: checkpoints, then the two partial sums.
struct BackLayout {
  int64_t blocks, ckpt, part;  // floats
};
BackLayout back_layout(int64_t t_len, int64_t d_inner, int64_t d_state) {
  BackLayout l{};
  by_state(d_state, "the CUDA selective scan's backward", [&](auto ns) {
    constexpr int NS = decltype(ns)::value;
    l.blocks = blocks_for(d_inner, channels_per_block<NS>());
  });
  l.ckpt = (t_len + kBackChunk - 1) / kBackChunk * d_inner * d_state;
  l.part = t_len * l.blocks * d_state;
  return l;
}

template <typename TI, typename TO>
void launch(const ScanArgs& a, float* state, cudaStream_t s) {
  by_state(a.d_state, "the CUDA selective scan", [&](auto ns) {
    constexpr int NS = decltype(ns)::value;
    constexpr int CH = channels_per_block<NS>();
    scan_kernel<TI, TO, NS><<<blocks_for(a.d_inner, CH), CH * NS, 0, s>>>(a, state);
  });
}

void run(const ScanArgs& a, float* state, cudaStream_t s) {
  if (a.in_type == DType::BF16 && a.out_type == DType::BF16) launch<bf16, bf16>(a, state, s);
  else if (a.in_type == DType::BF16) launch<bf16, float>(a, state, s);
  else if (a.out_type == DType::BF16) launch<float, bf16>(a, state, s);
  else launch<float, float>(a, state, s);
}

}  // namespace

void selective_scan(const ScanArgs& args, float* state, cudaStream_t stream) {
  if (args.t_len == 0) return;
  run(args, state, stream);
  JAMBA_CUDA_LAUNCHED("selective_scan");
}

size_t selective_scan_back_workspace(int64_t t_len, int64_t d_inner, int64_t d_state) {
  const BackLayout l = back_layout(t_len, d_inner, d_state);
  return size_t(l.ckpt + 2 * l.part) * sizeof(float);
}

void selective_scan_back(const ScanArgs& a, const float* state0, const ScanGrads& g, void* workspace, cudaStream_t stream) {
  if (a.t_len == 0) return;
  const BackLayout l = back_layout(a.t_len, a.d_inner, a.d_state);
  float* ckpt = static_cast<float*>(workspace);
  float* part_b = ckpt + l.ckpt;
  float* part_c = part_b + l.part;
  by_state(a.d_state, "the CUDA selective scan's backward", [&](auto ns) {
    constexpr int NS = decltype(ns)::value;
    if (a.in_type == DType::BF16) scan_back_kernel<bf16, NS><<<unsigned(l.blocks), back_threads<NS>(), 0, stream>>>(a, state0, g, ckpt, part_b, part_c);
    else scan_back_kernel<float, NS><<<unsigned(l.blocks), back_threads<NS>(), 0, stream>>>(a, state0, g, ckpt, part_b, part_c);
  });
  scan_back_reduce_kernel<<<unsigned(a.t_len), 32, 0, stream>>>(part_b, part_c, l.blocks, int(a.d_state), g);
  JAMBA_CUDA_LAUNCHED("selective_scan_back");
}

void mamba_decode_step(const MambaDecodeArgs& a, float* state_pool, const int32_t* slot, int64_t batch, cudaStream_t stream) {
  if (batch == 0) return;
  const size_t row = size_t(a.dt_rank + 2 * a.d_state) * sizeof(float);
  if (row > 48 * 1024) fail("invalid_argument", "mamba_decode_step: dt_rank + 2 d_state must be at most 12288");
  const int per_group = int(std::min<size_t>(kDecodeGroup, 48 * 1024 / row));
  const size_t smem = size_t(per_group) * row;
  auto go = [&](auto tag, auto ns) {
    using T = typename decltype(tag)::type;
    constexpr int NS = decltype(ns)::value;
    constexpr int CH = channels_per_block<NS>();
    decode_step_kernel<T, NS><<<dim3(blocks_for(a.d_inner, CH), blocks_for(batch, kDecodeSequences)), CH * NS, smem, stream>>>(
        a, state_pool, slot, batch, per_group);
  };
  auto by_type = [&](auto tag) { by_state(a.d_state, "mamba_decode_step", [&](auto ns) { go(tag, ns); }); };
  if (a.type == DType::BF16) by_type(Tag<bf16>{});
  else by_type(Tag<float>{});
  JAMBA_CUDA_LAUNCHED("mamba_decode_step");
}

}  // namespace jamba::cuda
