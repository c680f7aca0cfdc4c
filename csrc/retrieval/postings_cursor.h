// A position in one term's postings (index_format.h) during a search: passages in order, a block
// of 128 decoded at a time, and the block maxima read without decoding (the "shallow" position),
// which is what lets MaxScore pass over blocks that cannot matter. Every block is checked as it is
// decoded: passages ascending, in range, where the block's metadata says they end.
#pragma once
#include <cstdint>

#include "index_format.h"
#include "index_reader.h"
#include "postings_codec.h"

namespace jamba::retrieval {

class PostingsCursor {
 public:
  static constexpr uint32_t kEnd = UINT32_MAX;

  PostingsCursor(const IndexReader& r, const TermPostingsRef& ref);

  uint32_t doc() const { return doc_; }
  uint32_t freq() const { return freqs_[i_]; }
  // The term's largest x: its scores' bound.
  float max_x() const { return term_max_; }

  // Moves to the first passage ≥ target (never backwards); kEnd past the last.
  void advance(uint32_t target);
  void next() { advance(doc_ + 1); }

  // The largest x of the block holding the first passage ≥ target, and that block's last passage
  // (kEnd and 0 past the end). Moves the shallow position only; targets never decrease.
  float block_max(uint32_t target, uint32_t& last);
  // The largest x over the blocks that may hold passages in [from, to].
  float max_over(uint32_t from, uint32_t to);

 private:
  BlockMeta meta(uint64_t b) const;
  void decode(uint64_t b);
  void decode_short(const uint8_t* p, uint64_t size, int64_t prev, int n);
  void shallow_to(uint32_t target);

  const IndexReader& r_;
  uint64_t df_;
  uint64_t blocks_ = 1;
  const uint8_t* metas_ = nullptr;  // null: one short block, decoded at once
  const uint8_t* data_;
  uint64_t data_size_;
  float term_max_ = 0;
  uint32_t single_last_ = 0;

  uint64_t shallow_ = 0;  // first block whose last passage is ≥ the last shallow target
  uint64_t block_ = 0;  // the decoded block (the first, once constructed)
  int n_ = 0, i_ = 0;
  uint32_t doc_ = 0;
  uint32_t docs_[kBlockSize];
  uint32_t freqs_[kBlockSize];
};

}  // namespace jamba::retrieval
