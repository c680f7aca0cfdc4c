// BM25 as Lucene's BM25Similarity computes it (Lucene 8 and later, so Pyserini), in its float
// steps, so that scores equal Lucene's bit for bit and ties break as Lucene breaks them:
//
//   idf(t)   = (float) ln(1 + (N − df + 0.5) / (df + 0.5))          in double, then rounded
//   w(t)     = count_q(t) · idf(t)                                   the query's bag of words
//   avgdl    = (float) (Σ dl / N)
//   inv(dl)  = 1 / (k1 · ((1 − b) + b · dl / avgdl))                 one float per norm byte
//   x        = freq · inv(dl)
//   s(t, d)  = w − w / (1 + x)                                       (= w·f / (f + k1·(1 − b + b·dl/avgdl)))
//   score(d) = (float) Σ_t s(t, d), summed in double in query order
//
// N is Lucene's docCount (passages with at least one term); dl is the number of terms the analyzer
// kept, stored in Lucene's one-byte norm (SmallFloat.intToByte4: exact below 24, then 4
// significant bits) unless the index keeps exact lengths. s grows with x alone, so the largest x
// of a block bounds the block's scores exactly.
#pragma once
#include <cmath>
#include <cstdint>

namespace jamba::retrieval {

// Keeps the compiler from fusing a product into the next addition: Java rounds the product first.
inline void round_here(float& v) {
#if defined(__x86_64__) || defined(__i386__)
  asm("" : "+x"(v));
#elif defined(__aarch64__)
  asm("" : "+w"(v));
#else
  volatile float t = v;
  v = t;
#endif
}

inline float bm25_idf(uint64_t n, uint64_t df) {
  return float(std::log(1.0 + (double(n) - double(df) + 0.5) / (double(df) + 0.5)));
}

inline float bm25_avgdl(uint64_t sum_length, uint64_t n) { return float(double(sum_length) / double(n)); }

inline float bm25_inverse_norm(double k1d, double bd, uint64_t dl, float avgdl) {
  const float k1 = float(k1d), b = float(bd), len = float(dl);
  const float q = (b * len) / avgdl;
  return 1.0f / (k1 * ((1.0f - b) + q));
}

inline float bm25_x(uint32_t freq, float inv) {
  float x = float(freq) * inv;
  round_here(x);
  return x;
}

inline float bm25_term_score(float w, float x) { return w - w / (1.0f + x); }

// Lucene's SmallFloat.intToByte4 and byte4ToInt: a length in one byte.
inline uint8_t length_to_norm(uint64_t dl) {
  constexpr uint64_t kFree = 24;
  if (dl < kFree) return uint8_t(dl);
  if (dl >= (uint64_t(1) << 31)) return 255;  // Lucene's lengths are ints
  const uint64_t i = dl - kFree;
  const int bits = i ? 64 - __builtin_clzll(i) : 0;
  const uint64_t v = bits < 4 ? i : (((i >> (bits - 4)) & 0x07) | uint64_t(bits - 3) << 3);
  return uint8_t(kFree + v);
}

inline uint64_t norm_to_length(uint8_t b) {
  constexpr uint64_t kFree = 24;
  if (b < kFree) return b;
  const uint64_t i = b - kFree, mant = i & 0x07;
  const int shift = int(i >> 3) - 1;
  return kFree + (shift == -1 ? mant : (mant | 0x08) << shift);
}

}  // namespace jamba::retrieval
