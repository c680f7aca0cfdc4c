// Builds a BM25 index file (index_format.h) from passages given in corpus order, in bounded memory:
// passages are analyzed on the thread pool, their postings gathered in memory until the budget is
// reached and then written as a sorted run to a temporary file; their stored text goes straight
// into the index file, compressed. `finish` merges the runs term by term into the final postings
// (whose block maxima need the final average length), writes the dictionary and the norms, and
// renames the file into place, so an index appears whole or not at all. An index built in memory
// (no path) goes through the same steps without files.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "byte_io.h"
#include "text_analyzer.h"

namespace jamba::retrieval {

struct PassageInput {
  std::u16string id, title, text, source;
  bool has_title = false;
};

struct WriterOptions {
  double k1 = 0.9, b = 0.4;
  AnalyzerKind analyzer = AnalyzerKind::English;
  bool lucene_norms = true;
  std::string path;           // empty: in memory
  uint64_t memory_budget = uint64_t(256) << 20;  // postings held before a run is written
  std::string meta_json = "{}";
};

class IndexWriter {
 public:
  explicit IndexWriter(WriterOptions o);
  ~IndexWriter();  // removes whatever temporary files remain
  IndexWriter(const IndexWriter&) = delete;
  IndexWriter& operator=(const IndexWriter&) = delete;

  // Adds passages after those already added. `abort`, when set, is polled between passages.
  void add(const std::vector<PassageInput>& batch, const int32_t* abort);
  // Writes the index: to options.path, or returned as bytes when built in memory.
  std::string finish(const int32_t* abort);
  uint64_t passages() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace jamba::retrieval
