#include "index_reader.h"

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>

#include "../core/error.h"
#include "bm25_math.h"
#include "lz4_block.h"
#include "postings_codec.h"
#include "wtf8.h"

namespace jamba::retrieval {

void IndexReader::damaged(const std::string& what) const { fail("corpus", name_ + ": the index is damaged (" + what + ")"); }

std::shared_ptr<const IndexReader> IndexReader::open(std::shared_ptr<ByteView> bytes, std::string name) {
  std::shared_ptr<IndexReader> r(new IndexReader());
  r->bytes_ = std::move(bytes);
  r->name_ = std::move(name);
  const uint64_t size = r->bytes_->size();
  if (size < sizeof(FileHeader) || std::memcmp(r->bytes_->data(), kIndexMagic, sizeof kIndexMagic) != 0)
    fail("corpus", r->name_ + ": is not a jamba-node BM25 index");
  FileHeader& h = r->h_;
  std::memcpy(&h, r->bytes_->data(), sizeof h);
  if (h.version != kIndexVersion)
    fail("corpus", r->name_ + ": has index format version " + std::to_string(h.version) + "; this jamba-node reads version " + std::to_string(kIndexVersion));
  if (h.checksum != fnv1a(&h, offsetof(FileHeader, checksum))) r->damaged("its header's checksum does not match");
  for (int i = 0; i < kSectionCount; ++i) {
    const Section& s = h.sections[i];
    if (s.offset % 8 != 0 || s.offset < sizeof(FileHeader) || s.offset > size || s.size > size - s.offset) r->damaged("a section lies outside the file");
  }
  // The small sections are checked now; the dictionary, postings and passages on request (verify).
  for (int i : {kMeta, kTermIndex, kNorms, kStoredIndex, kSources})
    if (section_checksum(r->bytes_->data() + h.sections[i].offset, h.sections[i].size) != h.section_sums[i]) r->damaged("a section's checksum does not match");
  const bool lucene = h.flags & kLuceneNorms;
  if ((h.flags & ~uint32_t(kLuceneNorms)) || h.analyzer > 1) r->damaged("unknown flags");
  if (h.passages == 0 || h.passages >= UINT32_MAX || h.doc_count > h.passages || !(h.k1 >= 0) || !(h.b >= 0 && h.b <= 1))
    r->damaged("its statistics are impossible");
  if (h.sections[kNorms].size != h.passages * (lucene ? 1 : 4)) r->damaged("the norms do not cover the passages");
  if (h.sections[kTermIndex].size != (h.terms + kTermsPerBlock - 1) / kTermsPerBlock * 8) r->damaged("the term index does not cover the terms");
  if (h.sections[kStoredIndex].size % sizeof(StoredChunk) != 0) r->damaged("the stored passages' index is cut");
  r->norms_ = r->section(kNorms);
  r->avgdl_ = h.doc_count ? bm25_avgdl(h.sum_length, h.doc_count) : 0.0f;
  for (int i = 0; i < 256; ++i) r->norm_inverse_[i] = bm25_inverse_norm(h.k1, h.b, norm_to_length(uint8_t(i)), r->avgdl_);
  // The sources.
  const uint8_t* src = r->section(kSources);
  const uint64_t end = h.sections[kSources].size;
  size_t at = 0;
  uint64_t count;
  if (!get_varint(src, end, at, count) || count > end) r->damaged("the sources are cut");
  r->sources_.resize(count);
  for (auto& s : r->sources_) {
    uint64_t len;
    if (!get_varint(src, end, at, len) || len > end - at || !decode_wtf8(src + at, len, s)) r->damaged("the sources are cut");
    at += len;
  }
  return r;
}

std::string_view IndexReader::meta() const {
  return std::string_view(reinterpret_cast<const char*>(section(kMeta)), h_.sections[kMeta].size);
}

float IndexReader::exact_inverse(uint32_t doc) const {
  uint32_t len;
  std::memcpy(&len, norms_ + size_t(doc) * 4, 4);
  return bm25_inverse_norm(h_.k1, h_.b, len, avgdl_);
}

std::string_view IndexReader::block_first_term(uint64_t block) const {
  uint64_t off;
  std::memcpy(&off, section(kTermIndex) + block * 8, 8);
  const uint8_t* t = section(kTerms);
  const uint64_t end = h_.sections[kTerms].size;
  size_t at = size_t(off);
  uint64_t prefix, len;
  if (off >= end || !get_varint(t, end, at, prefix) || prefix != 0 || !get_varint(t, end, at, len) || len > end - at) damaged("the dictionary is cut");
  return std::string_view(reinterpret_cast<const char*>(t + at), len);
}

bool IndexReader::find(std::string_view term, TermPostingsRef& out) const {
  const uint64_t blocks = (h_.terms + kTermsPerBlock - 1) / kTermsPerBlock;
  if (blocks == 0) return false;
  // The last block whose first term is ≤ term.
  uint64_t lo = 0, hi = blocks;
  while (hi - lo > 1) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (block_first_term(mid) <= term) lo = mid;
    else hi = mid;
  }
  const uint8_t* t = section(kTerms);
  const uint64_t end = h_.sections[kTerms].size;
  uint64_t off;
  std::memcpy(&off, section(kTermIndex) + lo * 8, 8);
  size_t at = size_t(off);
  std::string current;
  uint64_t postings_at = 0;
  const uint64_t count = std::min<uint64_t>(kTermsPerBlock, h_.terms - lo * kTermsPerBlock);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t prefix, suffix, df, len;
    if (!get_varint(t, end, at, prefix) || prefix > current.size() || !get_varint(t, end, at, suffix) || suffix > end - at) damaged("the dictionary is cut");
    current.resize(prefix);
    current.append(reinterpret_cast<const char*>(t + at), suffix);
    at += suffix;
    if (!get_varint(t, end, at, df) || (i == 0 && !get_varint(t, end, at, postings_at)) || !get_varint(t, end, at, len)) damaged("the dictionary is cut");
    if (current == term) {
      const uint64_t psize = h_.sections[kPostings].size;
      if (postings_at > psize || len > psize - postings_at || df == 0 || df > h_.passages) damaged("a term's postings lie outside them");
      out = {df, section(kPostings) + postings_at, len};
      return true;
    }
    if (std::string_view(current) > term) return false;
    postings_at += len;
  }
  return false;
}

StoredPassage IndexReader::passage(uint32_t doc) const {
  if (doc >= h_.passages) damaged("a passage number is out of range");
  const auto* chunks = reinterpret_cast<const StoredChunk*>(section(kStoredIndex));
  const size_t n = h_.sections[kStoredIndex].size / sizeof(StoredChunk);
  // The last chunk whose first passage is ≤ doc.
  size_t lo = 0, hi = n;
  while (hi - lo > 1) {
    const size_t mid = lo + (hi - lo) / 2;
    StoredChunk c;
    std::memcpy(&c, chunks + mid, sizeof c);
    if (c.first <= doc) lo = mid;
    else hi = mid;
  }
  StoredChunk c;
  if (n == 0) damaged("no stored passages");
  std::memcpy(&c, chunks + lo, sizeof c);
  const uint64_t ssize = h_.sections[kStored].size;
  if (c.first > doc || c.offset > ssize || c.size > ssize - c.offset) damaged("a stored block lies outside its section");
  // LZ4 expands at most 255-fold (a length byte of 255 stands for 255 bytes): a larger size is damage.
  if (uint64_t(c.raw_size) > uint64_t(c.size) * 255 + 16) damaged("a stored block's size is impossible");
  std::unique_ptr<uint8_t[]> raw(new uint8_t[c.raw_size]);  // not zeroed: bytes are read only once decoded
  Lz4Decoder lz(section(kStored) + c.offset, c.size, raw.get(), c.raw_size);
  const uint8_t* p = raw.get();
  const size_t end = c.raw_size;
  size_t at = 0;
  // Decodes the block up to `bytes` past the read position (a varint: at most 10).
  auto need = [&](uint64_t bytes) {
    if (!lz.fill(size_t(std::min<uint64_t>(end, at + bytes)))) damaged("a stored block does not decompress");
  };
  // Records up to the one wanted are skipped by their lengths.
  auto next = [&](uint64_t& v) {
    need(10);
    if (!get_varint(p, lz.produced(), at, v)) damaged("a stored passage is cut");
  };
  auto field = [&](uint64_t len, std::u16string* s) {
    if (len > end - at) damaged("a stored passage is cut");
    if (s) {
      need(len);
      if (!decode_wtf8(p + at, len, *s)) damaged("a stored passage is cut");
    }
    at += len;
  };
  for (uint32_t d = c.first;; ++d) {
    const bool want = d == doc;
    StoredPassage out;
    uint64_t len, title, source;
    next(len);
    field(len, want ? &out.id : nullptr);
    next(title);
    out.has_title = title != 0;
    if (title) field(title - 1, want ? &out.title : nullptr);
    next(len);
    field(len, want ? &out.text : nullptr);
    next(source);
    if (source >= sources_.size()) damaged("a stored passage names no source");
    if (want) {
      out.source = sources_[source];
      return out;
    }
  }
}

void IndexReader::verify() const {
  for (int i = 0; i < kSectionCount; ++i)
    if (section_checksum(bytes_->data() + h_.sections[i].offset, h_.sections[i].size) != h_.section_sums[i]) damaged("a section's checksum does not match");
}

void IndexReader::write_to(const std::string& path) const {
  const std::string temp = path + ".tmp-" + std::to_string(getpid());
  try {
    FileSink out(temp);
    out.append(bytes_->data(), bytes_->size());
    out.close();
  } catch (...) {
    std::remove(temp.c_str());
    throw;
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(temp.c_str());
    fail("io", path + ": cannot move the index into place: " + std::strerror(e));
  }
}

}  // namespace jamba::retrieval
