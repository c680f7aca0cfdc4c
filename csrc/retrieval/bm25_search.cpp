#include "bm25_search.h"

#include <algorithm>
#include <limits>
#include <memory>

#include "bm25_math.h"
#include "postings_cursor.h"
#include "text_analyzer.h"

namespace jamba::retrieval {

namespace {

// Passages per window: the unit of bounds and of term-at-a-time accumulation.
constexpr uint32_t kWindow = 4096;

struct QueryTerm {
  std::unique_ptr<PostingsCursor> cursor;
  float weight = 0;  // count · idf
  float bound = 0;  // the term's largest score in the current window
  size_t order = 0;  // its place in the query
};

// The k best so far, worst on top: lower score, or equal score and higher passage.
class TopK {
 public:
  explicit TopK(size_t k) : k_(k) { heap_.reserve(k); }
  bool full() const { return heap_.size() == k_; }
  float threshold() const { return full() ? heap_.front().score : -std::numeric_limits<float>::infinity(); }
  void offer(Hit h) {
    if (!full()) {
      heap_.push_back(h);
      std::push_heap(heap_.begin(), heap_.end(), better);
    } else if (better(h, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), better);
      heap_.back() = h;
      std::push_heap(heap_.begin(), heap_.end(), better);
    }
  }
  std::vector<Hit> take() {
    std::sort(heap_.begin(), heap_.end(), better);
    return std::move(heap_);
  }

 private:
  // As a heap comparator, "a ranks before b" puts the worst on top.
  static bool better(const Hit& a, const Hit& b) { return a.score > b.score || (a.score == b.score && a.doc < b.doc); }
  size_t k_;
  std::vector<Hit> heap_;
};

}  // namespace

QueryTerms query_terms(const IndexReader& r, const char16_t* text, size_t n) {
  std::string terms;
  std::vector<uint32_t> ends;
  analyze(text, n, AnalyzerKind(r.header().analyzer), terms, ends);
  QueryTerms q;
  for (size_t i = 0; i < ends.size(); ++i) {
    const uint32_t b = i ? ends[i - 1] : 0;
    std::string t = terms.substr(b, ends[i] - b);
    auto it = std::find_if(q.begin(), q.end(), [&](const auto& e) { return e.first == t; });
    if (it == q.end()) q.emplace_back(std::move(t), 1);
    else ++it->second;
  }
  return q;
}

std::vector<Hit> bm25_top_k(const IndexReader& r, const QueryTerms& query, size_t k) {
  constexpr uint32_t kEnd = PostingsCursor::kEnd;
  std::vector<QueryTerm> terms;
  for (size_t i = 0; i < query.size(); ++i) {
    TermPostingsRef ref;
    if (!r.find(query[i].first, ref)) continue;
    QueryTerm t;
    t.cursor.reset(new PostingsCursor(r, ref));
    t.weight = float(query[i].second) * bm25_idf(r.header().doc_count, ref.df);
    t.order = i;
    terms.push_back(std::move(t));
  }
  TopK top(k);
  if (terms.empty() || k == 0) return top.take();
  const size_t n = terms.size();
  auto score = [&](QueryTerm& t) { return bm25_term_score(t.weight, bm25_x(t.cursor->freq(), r.inverse_norm(t.cursor->doc()))); };

  // Window by window: each term's bound over the window (its blocks' maxima) decides which terms
  // are essential there; the essential ones are summed term at a time into the window's
  // accumulators, then each passage they reached takes the others' scores while it can still
  // enter the k best. A window whose bounds sum to no more than the k-th score is passed over.
  std::vector<double> acc(kWindow, 0.0);
  std::vector<uint64_t> seen(kWindow / 64, 0);
  std::vector<size_t> by_bound(n);
  std::vector<double> rest(n + 1);
  uint32_t wmin = kEnd;
  for (auto& t : terms) wmin = std::min(wmin, t.cursor->doc());
  const uint64_t last_passage = r.header().passages - 1;
  while (wmin != kEnd) {
    const uint32_t wmax = uint32_t(std::min<uint64_t>(uint64_t(wmin) + kWindow - 1, last_passage));
    for (auto& t : terms) t.bound = t.cursor->doc() > wmax ? 0.0f : bm25_term_score(t.weight, t.cursor->max_over(wmin, wmax));
    for (size_t i = 0; i < n; ++i) by_bound[i] = i;
    std::sort(by_bound.begin(), by_bound.end(), [&](size_t a, size_t b) { return terms[a].bound < terms[b].bound || (terms[a].bound == terms[b].bound && a < b); });
    // Terms [0, essential) of by_bound cannot lift a passage past the k-th score by themselves.
    const double threshold = top.threshold();
    size_t essential = 0;
    if (top.full()) {
      double sum = 0;
      while (essential < n && sum + terms[by_bound[essential]].bound <= threshold) sum += terms[by_bound[essential++]].bound;
    }
    if (essential < n) {
      for (size_t e = essential; e < n; ++e) {
        QueryTerm& t = terms[by_bound[e]];
        t.cursor->advance(wmin);  // it may have been non-essential, and behind, in the last window
        for (uint32_t d = t.cursor->doc(); d <= wmax; d = t.cursor->doc()) {
          const uint32_t at = d - wmin;
          acc[at] += score(t);
          seen[at >> 6] |= uint64_t(1) << (at & 63);
          t.cursor->next();
        }
      }
      // rest[j]: what the non-essential terms from j down to 0 (heaviest first) can add at most.
      rest[0] = 0;
      for (size_t j = 0; j < essential; ++j) rest[j + 1] = rest[j] + terms[by_bound[j]].bound;
      for (size_t word = 0; word < seen.size(); ++word) {
        for (uint64_t bits = seen[word]; bits; bits &= bits - 1) {
          const uint32_t at = uint32_t(word * 64 + size_t(__builtin_ctzll(bits)));
          const uint32_t doc = wmin + at;
          double sum = acc[at];
          acc[at] = 0;
          bool pruned = false;
          for (size_t j = essential; j-- > 0;) {
            // With an equal score the passage would not enter: it comes after the one it ties with.
            if (top.full() && sum + rest[j + 1] <= top.threshold()) {
              pruned = true;
              break;
            }
            QueryTerm& t = terms[by_bound[j]];
            t.cursor->advance(doc);
            if (t.cursor->doc() == doc) sum += score(t);
          }
          if (!pruned) top.offer({doc, float(sum)});
        }
        seen[word] = 0;
      }
    }
    if (wmax == last_passage) break;
    wmin = wmax + 1;
  }
  return top.take();
}

}  // namespace jamba::retrieval
