#include "postings_cursor.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "bm25_math.h"

namespace jamba::retrieval {

PostingsCursor::PostingsCursor(const IndexReader& r, const TermPostingsRef& ref) : r_(r), df_(ref.df), data_(ref.data), data_size_(ref.size) {
  if (df_ < uint64_t(kBlockSize)) {
    decode_short(data_, data_size_, -1, int(df_));
    single_last_ = docs_[n_ - 1];
    for (int i = 0; i < n_; ++i) term_max_ = std::max(term_max_, bm25_x(freqs_[i], r_.inverse_norm(docs_[i])));
  } else {
    blocks_ = (df_ + kBlockSize - 1) / kBlockSize;
    const uint64_t head = 4 + blocks_ * sizeof(BlockMeta);
    if (data_size_ < head) r_.damaged("a term's block table is cut");
    std::memcpy(&term_max_, data_, 4);
    if (!std::isfinite(term_max_) || term_max_ < 0) r_.damaged("a term's bound is not a number");
    metas_ = data_ + 4;
    data_ += head;
    data_size_ -= head;
    decode(0);
  }
  doc_ = docs_[0];
}

BlockMeta PostingsCursor::meta(uint64_t b) const {
  if (!metas_) return {single_last_, uint32_t(data_size_), term_max_};
  BlockMeta m;
  std::memcpy(&m, metas_ + b * sizeof(BlockMeta), sizeof m);
  return m;
}

void PostingsCursor::decode_short(const uint8_t* p, uint64_t size, int64_t prev, int n) {
  size_t at = 0;
  for (int i = 0; i < n; ++i) {
    uint64_t v, f = 1;
    if (!get_varint(p, size, at, v) || (!(v & 1) && !get_varint(p, size, at, f)) || f == 0 || f > UINT32_MAX) r_.damaged("a posting is cut");
    prev += int64_t(v >> 1) + 1;
    if (prev >= int64_t(r_.header().passages)) r_.damaged("a posting names a passage past the last");
    docs_[i] = uint32_t(prev);
    freqs_[i] = uint32_t(f);
  }
  if (at != size) r_.damaged("a block's postings do not fill it");
  n_ = n;
}

void PostingsCursor::decode(uint64_t b) {
  if (!metas_) return;  // the one short block is decoded already
  const BlockMeta m = meta(b);
  const uint64_t start = b ? meta(b - 1).end : 0;
  const int64_t prev = b ? int64_t(meta(b - 1).last_doc) : -1;
  if (m.end > data_size_ || start > m.end) r_.damaged("a block lies outside its term's postings");
  const uint8_t* p = data_ + start;
  const uint64_t size = m.end - start;
  const int n = int(std::min<uint64_t>(kBlockSize, df_ - b * kBlockSize));
  if (n < kBlockSize) {
    decode_short(p, size, prev, n);
  } else {
    if (size < 2 || p[0] > 32 || p[1] > 32 || size != 2 + packed_bytes(p[0]) + packed_bytes(p[1])) r_.damaged("a block's widths do not match its size");
    unpack_block(p + 2, p[0], docs_);
    unpack_block(p + 2 + packed_bytes(p[0]), p[1], freqs_);
    int64_t d = prev;
    for (int i = 0; i < kBlockSize; ++i) {
      d += int64_t(docs_[i]) + 1;
      docs_[i] = uint32_t(d);
      if (freqs_[i] == UINT32_MAX) r_.damaged("a frequency is out of range");
      freqs_[i] += 1;
    }
    if (d >= int64_t(r_.header().passages)) r_.damaged("a posting names a passage past the last");
    n_ = kBlockSize;
  }
  if (docs_[n_ - 1] != m.last_doc) r_.damaged("a block does not end where its table says");
  block_ = b;
  i_ = 0;
}

void PostingsCursor::shallow_to(uint32_t target) {
  while (shallow_ < blocks_ && meta(shallow_).last_doc < target) ++shallow_;
}

void PostingsCursor::advance(uint32_t target) {
  if (doc_ >= target) return;  // kEnd included
  if (docs_[n_ - 1] < target) {
    // The shallow position never passes the block that holds target (targets never decrease).
    uint64_t b = std::max<uint64_t>(block_ + 1, shallow_);
    while (b < blocks_ && meta(b).last_doc < target) ++b;
    if (b >= blocks_) {
      doc_ = kEnd;
      return;
    }
    decode(b);
  }
  while (docs_[i_] < target) ++i_;
  doc_ = docs_[i_];
}

float PostingsCursor::block_max(uint32_t target, uint32_t& last) {
  shallow_to(target);
  if (shallow_ >= blocks_) {
    last = kEnd;
    return 0;
  }
  const BlockMeta m = meta(shallow_);
  if (!std::isfinite(m.max_x) || m.max_x < 0 || m.max_x > term_max_) r_.damaged("a block's bound is not a number");
  last = m.last_doc;
  return m.max_x;
}

float PostingsCursor::max_over(uint32_t from, uint32_t to) {
  shallow_to(from);
  float best = 0;
  for (uint64_t b = shallow_; b < blocks_; ++b) {
    const BlockMeta m = meta(b);
    if (!std::isfinite(m.max_x) || m.max_x < 0 || m.max_x > term_max_) r_.damaged("a block's bound is not a number");
    best = std::max(best, m.max_x);
    if (m.last_doc >= to) break;
  }
  return best;
}

}  // namespace jamba::retrieval
