// libFuzzer target: the forward pass with arbitrary batches, token ids, lengths, logits modes and
// abort flags, on a small random Jamba written to a temporary checkpoint at start-up. Every input
// must compute or raise jamba::Error; states must stay consistent (position = tokens accepted).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../csrc/core/dtype.h"
#include "../csrc/core/error.h"
#include "../csrc/model/jamba_model.h"

using namespace jamba;

namespace {

ModelDims dims() {
  ModelDims d;
  d.vocab = 97; d.hidden = 32; d.intermediate = 24; d.layers = 3; d.heads = 4; d.kv_heads = 2; d.head_dim = 8;
  d.d_inner = 64; d.d_state = 8; d.d_conv = 4; d.dt_rank = 2; d.experts = 3; d.top_k = 2; d.eps = 1e-6f;
  return d;
}

struct Writer {
  std::string header = "{";
  std::vector<uint16_t> data;
  std::vector<std::pair<std::string, std::vector<int64_t>>> order;
  uint32_t seed = 12345;
  void add(const std::string& name, std::vector<int64_t> shape, float center = 0.f, float amp = 0.3f) {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    const size_t begin = data.size() * 2;
    for (int64_t i = 0; i < n; ++i) {
      seed = seed * 1664525u + 1013904223u;
      data.push_back(f32_to_bf16(center + amp * (float(seed >> 8) / float(1 << 24) * 2.f - 1.f)));
    }
    std::string shp;
    for (size_t i = 0; i < shape.size(); ++i) shp += (i ? "," : "") + std::to_string(shape[i]);
    if (header.size() > 1) header += ",";
    header += "\"" + name + "\":{\"dtype\":\"BF16\",\"shape\":[" + shp + "],\"data_offsets\":[" + std::to_string(begin) + "," +
              std::to_string(data.size() * 2) + "]}";
    order.emplace_back(name, shape);
  }
};

std::unique_ptr<JambaModel> g_model;

TensorSource src(const std::string& file, uint64_t data_start, const std::string& header, const std::string& name,
                 const std::vector<std::pair<std::string, std::vector<int64_t>>>& order) {
  // Offsets are recomputed from the order tensors were added in.
  uint64_t off = 0;
  for (auto& [n, shape] : order) {
    int64_t numel = 1;
    for (auto s : shape) numel *= s;
    if (n == name) {
      TensorSource t;
      t.name = n; t.file = file; t.offset = data_start + off; t.nbytes = uint64_t(numel) * 2; t.dtype = DType::BF16; t.shape = shape;
      return t;
    }
    off += uint64_t(numel) * 2;
  }
  (void)header;
  __builtin_trap();
}

void build() {
  const ModelDims d = dims();
  Writer w;
  const int64_t H = d.hidden, I = d.intermediate, Di = d.d_inner, N = d.d_state, R = d.dt_rank;
  w.add("embed", {d.vocab, H}, 0.f, 1.f);
  w.add("final_norm", {H}, 1.f, 0.1f);
  w.add("lm_head", {d.vocab, H});
  for (int l = 0; l < d.layers; ++l) {
    const std::string p = "l" + std::to_string(l) + ".";
    w.add(p + "in_norm", {H}, 1.f, 0.1f);
    w.add(p + "ff_norm", {H}, 1.f, 0.1f);
    if (l == 1) {
      w.add(p + "q", {d.heads * d.head_dim, H}); w.add(p + "k", {d.kv_heads * d.head_dim, H});
      w.add(p + "v", {d.kv_heads * d.head_dim, H}); w.add(p + "o", {H, d.heads * d.head_dim});
    } else {
      w.add(p + "in_proj", {2 * Di, H}); w.add(p + "conv_w", {Di, 1, d.d_conv}); w.add(p + "conv_b", {Di});
      w.add(p + "x_proj", {R + 2 * N, Di}); w.add(p + "dt_proj", {Di, R}); w.add(p + "dt_bias", {Di}, -2.f, 0.5f);
      w.add(p + "a_log", {Di, N}, 1.f, 0.5f); w.add(p + "d", {Di}, 1.f, 0.2f); w.add(p + "out_proj", {H, Di});
      w.add(p + "dt_norm", {R}, 1.f, 0.1f); w.add(p + "b_norm", {N}, 1.f, 0.1f); w.add(p + "c_norm", {N}, 1.f, 0.1f);
    }
    if (l == 0 || l == 2) {
      w.add(p + "router", {d.experts, H});
      for (int e = 0; e < d.experts; ++e) {
        const std::string q = p + "e" + std::to_string(e) + ".";
        w.add(q + "gate", {I, H}); w.add(q + "up", {I, H}); w.add(q + "down", {H, I});
      }
    } else {
      w.add(p + "gate", {I, H}); w.add(p + "up", {I, H}); w.add(p + "down", {H, I});
    }
  }
  w.header += "}";
  char path[] = "/tmp/jamba-fuzz-XXXXXX";
  int fd = mkstemp(path);
  uint64_t n = w.header.size();
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
  if (write(fd, len, 8) != 8 || write(fd, w.header.data(), n) != ssize_t(n) ||
      write(fd, w.data.data(), w.data.size() * 2) != ssize_t(w.data.size() * 2)) __builtin_trap();
  close(fd);
  const std::string file = path;
  const uint64_t start = 8 + n;
  auto S = [&](const std::string& name) { return src(file, start, w.header, name, w.order); };
  ModelPlan plan;
  plan.dims = d;
  plan.embed = S("embed"); plan.final_norm = S("final_norm"); plan.lm_head = S("lm_head");
  for (int l = 0; l < d.layers; ++l) {
    const std::string p = "l" + std::to_string(l) + ".";
    LayerPlan lp;
    lp.attention = l == 1;
    lp.moe = l != 1;
    lp.input_norm = S(p + "in_norm"); lp.ff_norm = S(p + "ff_norm");
    if (lp.attention) {
      lp.attn = AttentionSources{S(p + "q"), S(p + "k"), S(p + "v"), S(p + "o")};
    } else {
      MambaSources& m = lp.mamba;
      m.in_proj = S(p + "in_proj"); m.conv_weight = S(p + "conv_w"); m.conv_bias = S(p + "conv_b"); m.x_proj = S(p + "x_proj");
      m.dt_proj = S(p + "dt_proj"); m.dt_proj_bias = S(p + "dt_bias"); m.a_log = S(p + "a_log"); m.d = S(p + "d");
      m.out_proj = S(p + "out_proj"); m.dt_norm = S(p + "dt_norm"); m.b_norm = S(p + "b_norm"); m.c_norm = S(p + "c_norm");
    }
    if (lp.moe) {
      lp.router = S(p + "router");
      for (int e = 0; e < d.experts; ++e) {
        const std::string q = p + "e" + std::to_string(e) + ".";
        lp.experts.push_back(MlpSources{S(q + "gate"), S(q + "up"), S(q + "down")});
      }
    } else {
      lp.mlp = MlpSources{S(p + "gate"), S(p + "up"), S(p + "down")};
    }
    plan.layers.push_back(lp);
  }
  g_model = std::make_unique<JambaModel>(plan);
  unlink(path);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  build();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  size_t pos = 0;
  auto byte = [&]() -> uint8_t { return pos < size ? data[pos++] : 0; };
  const int seqs = 1 + byte() % 4;
  const uint8_t mode = byte();
  ForwardRequest req;
  req.logits = mode % 3 == 0 ? ForwardRequest::Logits::All : mode % 3 == 1 ? ForwardRequest::Logits::Last : ForwardRequest::Logits::None;
  req.hidden = (mode & 0x10) != 0;
  const size_t H = size_t(g_model->dims().hidden);
  std::vector<std::unique_ptr<SequenceState>> states;
  std::vector<int32_t> flags(size_t(seqs), 0);
  std::vector<int64_t> embed_rows;
  for (int s = 0; s < seqs; ++s) {
    states.push_back(g_model->new_state());
    const int prefix = byte() % 8;  // tokens evaluated first, one call, then the fuzzed call
    for (int i = 0; i < prefix; ++i) {
      ForwardRequest warm;
      warm.states = {states.back().get()};
      warm.tokens = {{int32_t(byte() % 97)}};
      warm.logits = ForwardRequest::Logits::None;
      g_model->forward(warm);
    }
    const int n = byte() % 24;
    std::vector<int32_t> toks;
    for (int i = 0; i < n; ++i) {
      int32_t v = 0;
      std::memcpy(&v, data + std::min(pos, size - 1), std::min<size_t>(4, size - std::min(pos, size - 1)));
      pos += 4;
      toks.push_back((byte() & 1) ? v : int32_t(uint32_t(v) % 97));
    }
    req.states.push_back(states.back().get());
    req.tokens.push_back(toks);
    flags[size_t(s)] = (mode & 0x80) ? 1 : 0;
    // Soft-prompt rows before the tokens: whole rows of bounded values, or a ragged length.
    if (mode & 0x20) {
      const size_t rows = byte() % 3;
      std::vector<float> e(rows * H + (byte() % 7 == 0 ? 1 : 0));
      for (float& v : e) v = float(int8_t(byte())) / 16.f;
      embed_rows.push_back(int64_t(e.size() / H));
      req.embeds.push_back(std::move(e));
    } else {
      embed_rows.push_back(0);
    }
  }
  if (!(mode & 0x20)) req.embeds.clear();
  if (mode & 0x40) for (auto& f : flags) req.abort.push_back(&f);
  std::vector<int64_t> before;
  for (auto& st : states) before.push_back(st->position());
  try {
    ForwardResult r = g_model->forward(req);
    size_t rows = 0;
    for (size_t s = 0; s < req.tokens.size(); ++s) {
      const size_t n = req.tokens[s].size() + size_t(embed_rows[s]);
      rows += req.logits == ForwardRequest::Logits::All ? n : req.logits == ForwardRequest::Logits::Last ? 1 : 0;
    }
    if (r.logits.size() != rows * 97) __builtin_trap();
    if (req.hidden && r.hidden.size() != rows * H) __builtin_trap();
    for (size_t s = 0; s < states.size(); ++s)
      if (states[s]->position() != before[s] + int64_t(req.tokens[s].size()) + embed_rows[s]) __builtin_trap();
    for (float v : r.logits)
      if (!(v == v)) __builtin_trap();  // no NaN from valid input
  } catch (const Error&) {
    // Rejected input must leave each state either untouched or reset to empty.
    for (size_t s = 0; s < states.size(); ++s)
      if (states[s]->position() != before[s] && states[s]->position() != 0) __builtin_trap();
  }
  return 0;
}
