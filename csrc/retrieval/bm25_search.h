// The k best passages for a query, scored as Lucene scores them (bm25_math.h), document at a time
// with block-max MaxScore (Turtle and Flood 1995; Ding and Suel 2011; Lucene's impacts): terms
// are ordered by their bound, and those whose bounds together cannot lift a passage past the k-th
// score only score the passages the others bring up; windows of passages whose blocks' maxima
// cannot reach the k-th score are passed over undecoded. Every passage that is scored is scored
// in full, in query-term order, so pruning never changes a score, and ties go to the lower passage
// number, as Lucene breaks them by doc id.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "index_reader.h"

namespace jamba::retrieval {

struct Hit {
  uint32_t doc;
  float score;
};

// A query's distinct terms (WTF-8) with their counts, in the order they first appear.
using QueryTerms = std::vector<std::pair<std::string, uint32_t>>;

// The query text's terms under the index's analyzer.
QueryTerms query_terms(const IndexReader& r, const char16_t* text, size_t n);

// Best first; fewer than k when fewer passages match.
std::vector<Hit> bm25_top_k(const IndexReader& r, const QueryTerms& query, size_t k);

}  // namespace jamba::retrieval
