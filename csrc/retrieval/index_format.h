// The BM25 index file: one file, read in place through mmap. Little-endian; every section starts
// at a multiple of 8 bytes.
//
//   FileHeader          magic, version, parameters, collection statistics, the sections below
//   meta                JSON for the JavaScript side (format name, writer version)
//   term_index          u64 per block of kTermsPerBlock terms: where the block starts in `terms`
//   terms               the dictionary, sorted by WTF-8 bytes, in blocks of kTermsPerBlock
//                       front-coded entries: varint shared prefix, varint suffix length, suffix,
//                       varint df, varint postings offset (the block's first absolute, then deltas)
//   postings            per term, in passage order (postings_codec.h):
//                         df < 128: df varints of (passage gap − 1) << 1 | (freq == 1), then
//                           freq when it is not 1 (Lucene's trick: most frequencies are 1)
//                         df ≥ 128: f32 the term's largest x; then per block of 128 (the last may be
//                           shorter) a BlockMeta; then the blocks: a full block is u8 gap bits,
//                           u8 freq bits, 128 packed (gap − 1), 128 packed (freq − 1); a short
//                           last block is varints as above
//   norms               per passage: Lucene's one-byte length norm, or the exact length as u32
//   stored_index        StoredChunk per chunk of passages
//   stored              LZ4 blocks (lz4_block.h) of passage records: varint id length, id,
//                       varint (title length + 1, or 0 for none), title, varint text length, text,
//                       varint source number (all strings WTF-8)
//   sources             varint count, then varint length + bytes per distinct source
//
// "x" is f32(freq · inv(norm)), the one number a posting's score grows with (bm25_search.h), so the
// largest x of a block bounds its scores exactly: Lucene's impacts, for block-max MaxScore.
#pragma once
#include <cstdint>

namespace jamba::retrieval {

constexpr char kIndexMagic[8] = {'J', 'N', 'B', 'M', '2', '5', '\r', '\n'};
constexpr uint32_t kIndexVersion = 1;
constexpr int kTermsPerBlock = 32;

enum IndexFlags : uint32_t { kLuceneNorms = 1 };

enum SectionId : int { kMeta, kTermIndex, kTerms, kPostings, kNorms, kStoredIndex, kStored, kSources, kSectionCount };

struct Section {
  uint64_t offset;
  uint64_t size;
};

struct FileHeader {
  char magic[8];
  uint32_t version;
  uint32_t flags;
  uint32_t analyzer;  // AnalyzerKind
  uint32_t reserved;
  double k1;
  double b;
  uint64_t passages;    // stored passages, numbered 0..passages−1 in corpus order
  uint64_t doc_count;   // passages with at least one term (Lucene's docCount)
  uint64_t sum_length;  // Σ passage lengths (terms kept by the analyzer)
  uint64_t terms;
  Section sections[kSectionCount];
  uint64_t section_sums[kSectionCount];  // section_checksum of each section
  uint64_t checksum;    // FNV-1a of the bytes above: a damaged header is told from a bad section
};

struct BlockMeta {
  uint32_t last_doc;  // the block's last passage
  uint32_t end;       // where the block's bytes end, from the start of the term's block data
  float max_x;        // the block's largest x
};

struct StoredChunk {
  uint64_t offset;  // in `stored`
  uint32_t first;   // its first passage
  uint32_t raw_size;
  uint32_t size;    // compressed
  uint32_t reserved;
};

static_assert(sizeof(FileHeader) == 72 + 24 * kSectionCount + 8, "FileHeader has no padding");
static_assert(sizeof(BlockMeta) == 12 && sizeof(StoredChunk) == 24, "packed records");

// A section's checksum: FNV-1a's step over 8-byte words (then the tail), fast enough to check
// the small sections at every open and the whole file on request (IndexReader::verify). Fed in
// pieces as a section is written.
class SectionHasher {
 public:
  void update(const uint8_t* p, uint64_t n) {
    length_ += n;
    while (n && fill_) {  // complete a word begun by the last piece
      word_[fill_++] = *p++;
      --n;
      if (fill_ == 8) {
        step(word_);
        fill_ = 0;
      }
    }
    for (; n >= 8; p += 8, n -= 8) step(p);
    while (n--) word_[fill_++] = *p++;
  }
  uint64_t finish() const {
    uint64_t h = h_ ^ length_;
    for (int i = 0; i < fill_; ++i) h = (h ^ word_[i]) * 1099511628211ull;
    return h;
  }

 private:
  void step(const uint8_t* w8) {
    uint64_t w;
    __builtin_memcpy(&w, w8, 8);
    h_ = (h_ ^ w) * 1099511628211ull;
    h_ ^= h_ >> 29;
  }
  uint64_t h_ = 1469598103934665603ull, length_ = 0;
  uint8_t word_[8] = {};
  int fill_ = 0;
};

inline uint64_t section_checksum(const uint8_t* p, uint64_t n) {
  SectionHasher h;
  h.update(p, n);
  return h.finish();
}

inline uint64_t fnv1a(const void* data, uint64_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 1469598103934665603ull;
  for (uint64_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace jamba::retrieval
