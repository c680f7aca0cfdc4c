// An index file (index_format.h) opened for reading, in place: the header and section bounds are
// checked when it opens, every other read when it happens, so a damaged or truncated file raises
// an Error of kind "corpus" naming it instead of reading out of bounds. Immutable once open, so
// any number of threads search it at once.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "byte_io.h"
#include "index_format.h"

namespace jamba::retrieval {

// One term's postings as the dictionary gives them.
struct TermPostingsRef {
  uint64_t df = 0;
  const uint8_t* data = nullptr;
  uint64_t size = 0;
};

struct StoredPassage {
  std::u16string id, title, text, source;
  bool has_title = false;
};

class IndexReader {
 public:
  // `name` is what errors call the index (its path).
  static std::shared_ptr<const IndexReader> open(std::shared_ptr<ByteView> bytes, std::string name);

  const FileHeader& header() const { return h_; }
  bool lucene_norms() const { return h_.flags & kLuceneNorms; }
  std::string_view meta() const;
  const std::string& name() const { return name_; }
  uint64_t bytes() const { return bytes_->size(); }
  float avgdl() const { return avgdl_; }

  // The term's postings; false if the index does not hold it.
  bool find(std::string_view term, TermPostingsRef& out) const;
  // What a posting of `doc` multiplies its frequency by (bm25_math.h's inv).
  float inverse_norm(uint32_t doc) const {
    return lucene_norms() ? norm_inverse_[norms_[doc]] : exact_inverse(doc);
  }
  StoredPassage passage(uint32_t doc) const;
  // Checks every section against its checksum (open checks only the small ones): Lucene's CheckIndex.
  void verify() const;
  // Writes the index's bytes to `path` (through a temporary file, renamed into place).
  void write_to(const std::string& path) const;

  [[noreturn]] void damaged(const std::string& what) const;

 private:
  IndexReader() = default;
  const uint8_t* section(SectionId id) const { return bytes_->data() + h_.sections[id].offset; }
  float exact_inverse(uint32_t doc) const;
  // The first term of dictionary block `block`.
  std::string_view block_first_term(uint64_t block) const;

  std::shared_ptr<ByteView> bytes_;
  std::string name_;
  FileHeader h_{};
  float avgdl_ = 0;
  float norm_inverse_[256] = {};
  const uint8_t* norms_ = nullptr;
  std::vector<std::u16string> sources_;
};

}  // namespace jamba::retrieval
