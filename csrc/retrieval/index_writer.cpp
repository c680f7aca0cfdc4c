#include "index_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <queue>
#include <string_view>
#include <unordered_map>

#include "../core/error.h"
#include "../core/thread_pool.h"
#include "bm25_math.h"
#include "index_format.h"
#include "lz4_block.h"
#include "postings_codec.h"
#include "wtf8.h"

namespace jamba::retrieval {

namespace {

// Raw bytes of passage records per LZ4 block: a retrieved passage costs one block's decompression.
constexpr size_t kChunkBytes = 32 << 10;

void check_abort(const int32_t* abort) {
  if (abort && __atomic_load_n(abort, __ATOMIC_RELAXED)) fail("aborted", "the operation was aborted");
}

template <typename T>
void put_raw(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// One passage after analysis: its distinct terms (sorted) with their counts, and its stored record.
struct Analyzed {
  std::string terms;            // concatenated, sorted, distinct
  std::vector<uint32_t> ends;   // end of each term in `terms`
  std::vector<uint32_t> freqs;
  uint32_t length = 0;          // terms kept by the analyzer
  std::string record;           // id, title, text (the source is numbered when the passage is added)
};

void analyze_passage(const PassageInput& p, AnalyzerKind kind, Analyzed& out) {
  // Title and text form one field, Pyserini's "contents".
  std::u16string contents;
  const std::u16string* field = &p.text;
  if (p.has_title && !p.title.empty()) {
    contents.reserve(p.title.size() + 1 + p.text.size());
    contents.append(p.title).append(1, u'\n').append(p.text);
    field = &contents;
  }
  std::string terms;
  std::vector<uint32_t> ends;
  analyze(field->data(), field->size(), kind, terms, ends);
  out.length = uint32_t(ends.size());
  std::vector<std::string_view> views(ends.size());
  for (size_t i = 0; i < ends.size(); ++i) {
    const uint32_t b = i ? ends[i - 1] : 0;
    views[i] = std::string_view(terms.data() + b, ends[i] - b);
  }
  std::sort(views.begin(), views.end());
  out.terms.clear();
  out.ends.clear();
  out.freqs.clear();
  for (size_t i = 0; i < views.size();) {
    size_t j = i + 1;
    while (j < views.size() && views[j] == views[i]) ++j;
    out.terms.append(views[i]);
    out.ends.push_back(uint32_t(out.terms.size()));
    out.freqs.push_back(uint32_t(j - i));
    i = j;
  }
  std::string& r = out.record;
  r.clear();
  std::string s;
  append_wtf8(s, p.id.data(), p.id.size());
  put_varint(r, s.size());
  r += s;
  if (p.has_title) {
    s.clear();
    append_wtf8(s, p.title.data(), p.title.size());
    put_varint(r, s.size() + 1);
    r += s;
  } else {
    put_varint(r, 0);
  }
  s.clear();
  append_wtf8(s, p.text.data(), p.text.size());
  put_varint(r, s.size());
  r += s;
}

// The postings of the passages added since the last run: term → (passage, freq) pairs.
class TermTable {
 public:
  struct Entry {
    uint64_t offset;
    uint32_t length;
    uint32_t hash;
    std::vector<uint32_t> postings;  // passage, freq, passage, freq, ...
  };

  std::vector<uint32_t>& postings(std::string_view term) {
    if (4 * (entries_.size() + 1) > 3 * slots_.size()) grow();
    const uint32_t h = hash(term);
    const size_t mask = slots_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      const uint32_t e = slots_[i];
      if (e == kEmpty) {
        slots_[i] = uint32_t(entries_.size());
        entries_.push_back({arena_.size(), uint32_t(term.size()), h, {}});
        arena_.append(term);
        return entries_.back().postings;
      }
      const Entry& x = entries_[e];
      if (x.hash == h && term_of(x) == term) return entries_[e].postings;
    }
  }

  std::string_view term_of(const Entry& e) const { return std::string_view(arena_.data() + e.offset, e.length); }
  std::vector<Entry>& entries() { return entries_; }
  // Bytes held, roughly: what the memory budget is compared with.
  uint64_t bytes() const { return arena_.size() + entries_.size() * (sizeof(Entry) + 8) + postings_bytes; }
  uint64_t postings_bytes = 0;

  // Entry numbers in term order.
  std::vector<uint32_t> sorted() const {
    std::vector<uint32_t> order(entries_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = uint32_t(i);
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return term_of(entries_[a]) < term_of(entries_[b]); });
    return order;
  }

  void clear() {
    arena_.clear();
    arena_.shrink_to_fit();
    entries_.clear();
    entries_.shrink_to_fit();
    slots_.assign(1024, kEmpty);
    postings_bytes = 0;
  }

  TermTable() { slots_.assign(1024, kEmpty); }

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;
  static uint32_t hash(std::string_view s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return uint32_t(h ^ (h >> 32));
  }
  void grow() {
    std::vector<uint32_t> bigger(slots_.size() * 2, kEmpty);
    const size_t mask = bigger.size() - 1;
    for (uint32_t e = 0; e < entries_.size(); ++e) {
      size_t i = entries_[e].hash & mask;
      while (bigger[i] != kEmpty) i = (i + 1) & mask;
      bigger[i] = e;
    }
    slots_.swap(bigger);
  }

  std::string arena_;
  std::vector<Entry> entries_;
  std::vector<uint32_t> slots_;
};

// A sorted run of terms with their postings, read back one term at a time for the merge.
class RunInput {
 public:
  virtual ~RunInput() = default;
  // Moves to the next term; false at the end.
  virtual bool advance() = 0;
  const std::string& term() const { return term_; }
  // Appends the current term's postings.
  virtual void take(std::vector<uint32_t>& docs, std::vector<uint32_t>& freqs) = 0;

 protected:
  std::string term_;
};

// Run file: per term in order, varint length, bytes, varint df, then df × (varint passage gap − 1, varint freq).
class FileRun final : public RunInput {
 public:
  explicit FileRun(const std::string& path) : src_(path) {}
  bool advance() override {
    if (src_.at_end()) return false;
    term_.resize(src_.varint());
    src_.read(&term_[0], term_.size());
    df_ = src_.varint();
    return true;
  }
  void take(std::vector<uint32_t>& docs, std::vector<uint32_t>& freqs) override {
    int64_t prev = -1;
    for (uint64_t i = 0; i < df_; ++i) {
      prev += int64_t(src_.varint()) + 1;
      docs.push_back(uint32_t(prev));
      freqs.push_back(uint32_t(src_.varint()));
    }
  }

 private:
  FileSource src_;
  uint64_t df_ = 0;
};

// The postings still in memory, as the last run.
class MemoryRun final : public RunInput {
 public:
  explicit MemoryRun(TermTable& t) : t_(t), order_(t.sorted()) {}
  bool advance() override {
    if (++at_ >= order_.size()) return false;
    term_.assign(t_.term_of(t_.entries()[order_[at_]]));
    return true;
  }
  void take(std::vector<uint32_t>& docs, std::vector<uint32_t>& freqs) override {
    std::vector<uint32_t>& p = t_.entries()[order_[at_]].postings;
    for (size_t i = 0; i < p.size(); i += 2) {
      docs.push_back(p[i]);
      freqs.push_back(p[i + 1]);
    }
    std::vector<uint32_t>().swap(p);
  }

 private:
  TermTable& t_;
  std::vector<uint32_t> order_;
  size_t at_ = size_t(-1);
};

// The dictionary, written as the merge emits terms in order (index_format.h).
class DictionaryBuilder {
 public:
  void add(const std::string& term, uint64_t df, uint64_t offset, uint64_t length) {
    size_t prefix = 0;
    if (count_ % kTermsPerBlock == 0) {
      index_.push_back(bytes_.size());
    } else {
      const size_t limit = std::min(term.size(), previous_.size());
      while (prefix < limit && term[prefix] == previous_[prefix]) ++prefix;
    }
    put_varint(bytes_, prefix);
    put_varint(bytes_, term.size() - prefix);
    bytes_.append(term, prefix, std::string::npos);
    put_varint(bytes_, df);
    if (count_ % kTermsPerBlock == 0) put_varint(bytes_, offset);
    put_varint(bytes_, length);
    previous_ = term;
    ++count_;
  }
  uint64_t count() const { return count_; }
  const std::vector<uint64_t>& index() const { return index_; }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_, previous_;
  std::vector<uint64_t> index_;
  uint64_t count_ = 0;
};

}  // namespace

struct IndexWriter::State {
  WriterOptions o;
  std::string temp_path;  // the index while it is written (file mode)
  std::unique_ptr<ByteSink> out;
  std::vector<std::string> runs;
  TermTable table;
  std::vector<uint32_t> lengths;
  uint64_t doc_count = 0, sum_length = 0;
  std::string chunk;
  uint32_t chunk_first = 0;
  std::vector<StoredChunk> chunks;
  uint64_t stored_start = 0;
  SectionHasher stored_sum;
  std::unordered_map<std::string, uint32_t> source_numbers;
  std::vector<std::string> sources;
  bool finished = false;

  void flush_chunk() {
    if (chunk.empty()) return;
    std::string packed;
    lz4_compress(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size(), packed);
    chunks.push_back({out->size() - stored_start, chunk_first, uint32_t(chunk.size()), uint32_t(packed.size()), 0});
    out->append(packed);
    stored_sum.update(reinterpret_cast<const uint8_t*>(packed.data()), packed.size());
    chunk.clear();
    chunk_first = uint32_t(lengths.size());
  }

  void write_run() {
    const std::string path = o.path + ".tmp-" + std::to_string(getpid()) + ".run" + std::to_string(runs.size());
    runs.push_back(path);
    FileSink run(path);
    std::string buf;
    for (uint32_t e : table.sorted()) {
      const auto& entry = table.entries()[e];
      buf.clear();
      put_varint(buf, entry.length);
      buf.append(table.term_of(entry));
      put_varint(buf, entry.postings.size() / 2);
      int64_t prev = -1;
      for (size_t i = 0; i < entry.postings.size(); i += 2) {
        put_varint(buf, uint64_t(int64_t(entry.postings[i]) - prev - 1));
        put_varint(buf, entry.postings[i + 1]);
        prev = entry.postings[i];
      }
      run.append(buf);
    }
    run.close();
    table.clear();
  }

  void remove_temporaries() {
    for (const auto& r : runs) std::remove(r.c_str());
    runs.clear();
    if (!temp_path.empty()) {
      out.reset();
      std::remove(temp_path.c_str());
    }
  }
};

IndexWriter::IndexWriter(WriterOptions o) : s_(new State()) {
  s_->o = std::move(o);
  if (!s_->o.path.empty()) {
    s_->temp_path = s_->o.path + ".tmp-" + std::to_string(getpid());
    try {
      s_->out.reset(new FileSink(s_->temp_path));
    } catch (const Error&) {
      fail("io", s_->o.path + ": cannot create the index: " + std::strerror(errno));
    }
  } else {
    s_->out.reset(new StringSink());
    s_->o.memory_budget = UINT64_MAX;  // nothing to spill to
  }
  const FileHeader blank{};
  s_->out->append(&blank, sizeof blank);
  s_->stored_start = s_->out->size();
}

IndexWriter::~IndexWriter() {
  if (s_) s_->remove_temporaries();
}

uint64_t IndexWriter::passages() const { return s_->lengths.size(); }

void IndexWriter::add(const std::vector<PassageInput>& batch, const int32_t* abort) {
  State& s = *s_;
  if (s.finished) fail("invalid_argument", "the index is already finished");
  if (s.lengths.size() + batch.size() >= UINT32_MAX) fail("invalid_argument", "an index holds fewer than 2^32 − 1 passages");
  std::vector<Analyzed> done(batch.size());
  // An exception must not leave a pool thread (it would end the process): the first is kept and
  // rethrown here.
  std::mutex failed_mutex;
  std::exception_ptr failed;
  ThreadPool::instance().parallel_for(int64_t(batch.size()), [&](int64_t b, int64_t e) {
    try {
      for (int64_t i = b; i < e; ++i) {
        check_abort(abort);
        analyze_passage(batch[size_t(i)], s.o.analyzer, done[size_t(i)]);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lk(failed_mutex);
      if (!failed) failed = std::current_exception();
    }
  });
  if (failed) std::rethrow_exception(failed);
  for (size_t i = 0; i < done.size(); ++i) {
    Analyzed& a = done[i];
    const uint32_t doc = uint32_t(s.lengths.size());
    s.lengths.push_back(a.length);
    s.sum_length += a.length;
    if (a.length) ++s.doc_count;
    for (size_t t = 0; t < a.ends.size(); ++t) {
      const uint32_t from = t ? a.ends[t - 1] : 0;
      std::vector<uint32_t>& p = s.table.postings(std::string_view(a.terms.data() + from, a.ends[t] - from));
      const size_t before = p.capacity();
      p.push_back(doc);
      p.push_back(a.freqs[t]);
      s.table.postings_bytes += (p.capacity() - before) * sizeof(uint32_t);
    }
    std::string source;
    append_wtf8(source, batch[i].source.data(), batch[i].source.size());
    auto it = s.source_numbers.find(source);
    if (it == s.source_numbers.end()) {
      it = s.source_numbers.emplace(source, uint32_t(s.sources.size())).first;
      s.sources.push_back(source);
    }
    s.chunk += a.record;
    put_varint(s.chunk, it->second);
    if (s.chunk.size() >= kChunkBytes) s.flush_chunk();
    if (s.table.bytes() >= s.o.memory_budget) {
      check_abort(abort);
      s.write_run();
    }
  }
}

std::string IndexWriter::finish(const int32_t* abort) {
  State& s = *s_;
  if (s.finished) fail("invalid_argument", "the index is already finished");
  if (s.lengths.empty()) fail("invalid_argument", "no passages were added");
  s.finished = true;
  s.flush_chunk();
  ByteSink& out = *s.out;
  FileHeader h{};
  std::memcpy(h.magic, kIndexMagic, sizeof h.magic);
  h.version = kIndexVersion;
  h.flags = s.o.lucene_norms ? uint32_t(kLuceneNorms) : 0u;
  h.analyzer = uint32_t(s.o.analyzer);
  h.k1 = s.o.k1;
  h.b = s.o.b;
  h.passages = s.lengths.size();
  h.doc_count = s.doc_count;
  h.sum_length = s.sum_length;
  h.sections[kStored] = {s.stored_start, out.size() - s.stored_start};
  out.pad_to(8);

  // The norms, and x for any posting: what the block maxima are made of.
  const float avgdl = s.doc_count ? bm25_avgdl(s.sum_length, s.doc_count) : 0.0f;
  std::vector<uint8_t> norm_bytes;
  std::vector<float> inverse;  // per norm byte, or per passage with exact lengths
  if (s.o.lucene_norms) {
    norm_bytes.resize(s.lengths.size());
    for (size_t d = 0; d < s.lengths.size(); ++d) norm_bytes[d] = length_to_norm(s.lengths[d]);
    inverse.resize(256);
    for (int i = 0; i < 256; ++i) inverse[size_t(i)] = bm25_inverse_norm(s.o.k1, s.o.b, norm_to_length(uint8_t(i)), avgdl);
  } else {
    inverse.resize(s.lengths.size());
    for (size_t d = 0; d < s.lengths.size(); ++d) inverse[d] = bm25_inverse_norm(s.o.k1, s.o.b, s.lengths[d], avgdl);
  }
  auto x_of = [&](uint32_t doc, uint32_t freq) { return bm25_x(freq, s.o.lucene_norms ? inverse[norm_bytes[doc]] : inverse[doc]); };

  // The merge: runs in the order written hold ascending passages, so a term's postings are the
  // concatenation of its runs' in run order.
  std::vector<std::unique_ptr<RunInput>> inputs;
  for (const auto& r : s.runs) inputs.emplace_back(new FileRun(r));
  inputs.emplace_back(new MemoryRun(s.table));
  using Head = std::pair<const std::string*, size_t>;
  auto later = [](const Head& a, const Head& b) { return *a.first > *b.first || (*a.first == *b.first && a.second > b.second); };
  std::priority_queue<Head, std::vector<Head>, decltype(later)> heads(later);
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i]->advance()) heads.push({&inputs[i]->term(), i});

  h.sections[kPostings].offset = out.size();
  DictionaryBuilder dict;
  SectionHasher postings_sum;
  std::vector<uint32_t> docs, freqs, gaps(kBlockSize), fm1(kBlockSize);
  std::vector<BlockMeta> metas;
  std::string bytes, data;
  std::string term;
  uint64_t merged = 0;
  while (!heads.empty()) {
    if ((++merged & 1023) == 0) check_abort(abort);
    term = *heads.top().first;
    docs.clear();
    freqs.clear();
    while (!heads.empty() && *heads.top().first == term) {
      const size_t i = heads.top().second;
      heads.pop();
      inputs[i]->take(docs, freqs);
      if (inputs[i]->advance()) heads.push({&inputs[i]->term(), i});
    }
    const size_t df = docs.size();
    bytes.clear();
    int64_t prev = -1;
    auto put_short = [&](std::string& to, size_t from, size_t to_end) {
      for (size_t i = from; i < to_end; ++i) {
        const uint64_t gap = uint64_t(int64_t(docs[i]) - prev - 1);
        prev = docs[i];
        put_varint(to, gap << 1 | (freqs[i] == 1 ? 1 : 0));
        if (freqs[i] != 1) put_varint(to, freqs[i]);
      }
    };
    if (df < size_t(kBlockSize)) {
      put_short(bytes, 0, df);
    } else {
      metas.clear();
      data.clear();
      float term_max = 0;
      for (size_t at = 0; at < df; at += kBlockSize) {
        const size_t n = std::min(df - at, size_t(kBlockSize));
        float block_max = 0;
        for (size_t i = at; i < at + n; ++i) block_max = std::max(block_max, x_of(docs[i], freqs[i]));
        if (n == size_t(kBlockSize)) {
          for (size_t i = 0; i < n; ++i) {
            gaps[i] = uint32_t(int64_t(docs[at + i]) - prev - 1);
            prev = docs[at + i];
            fm1[i] = freqs[at + i] - 1;
          }
          const int gb = bits_needed(gaps.data(), kBlockSize), fb = bits_needed(fm1.data(), kBlockSize);
          data.push_back(char(gb));
          data.push_back(char(fb));
          pack_block(gaps.data(), gb, data);
          pack_block(fm1.data(), fb, data);
        } else {
          put_short(data, at, at + n);
        }
        metas.push_back({docs[at + n - 1], uint32_t(data.size()), block_max});
        term_max = std::max(term_max, block_max);
      }
      if (data.size() >= UINT32_MAX) fail("invalid_argument", "a term's postings exceed 4 GB");
      put_raw(bytes, term_max);
      bytes.append(reinterpret_cast<const char*>(metas.data()), metas.size() * sizeof(BlockMeta));
      bytes += data;
    }
    dict.add(term, df, out.size() - h.sections[kPostings].offset, bytes.size());
    out.append(bytes);
    postings_sum.update(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  h.sections[kPostings].size = out.size() - h.sections[kPostings].offset;
  h.terms = dict.count();
  for (const auto& r : s.runs) std::remove(r.c_str());
  s.runs.clear();

  auto section = [&](SectionId id, const void* p, size_t n) {
    out.pad_to(8);
    h.sections[id] = {out.size(), n};
    h.section_sums[id] = section_checksum(static_cast<const uint8_t*>(p), n);
    out.append(p, n);
  };
  section(kTermIndex, dict.index().data(), dict.index().size() * sizeof(uint64_t));
  section(kTerms, dict.bytes().data(), dict.bytes().size());
  if (s.o.lucene_norms) section(kNorms, norm_bytes.data(), norm_bytes.size());
  else section(kNorms, s.lengths.data(), s.lengths.size() * sizeof(uint32_t));
  section(kStoredIndex, s.chunks.data(), s.chunks.size() * sizeof(StoredChunk));
  std::string src;
  put_varint(src, s.sources.size());
  for (const auto& x : s.sources) {
    put_varint(src, x.size());
    src += x;
  }
  section(kSources, src.data(), src.size());
  section(kMeta, s.o.meta_json.data(), s.o.meta_json.size());
  h.section_sums[kStored] = s.stored_sum.finish();
  h.section_sums[kPostings] = postings_sum.finish();
  h.checksum = fnv1a(&h, offsetof(FileHeader, checksum));
  out.patch(0, &h, sizeof h);

  if (s.o.path.empty()) {
    std::string bytes_out = std::move(static_cast<StringSink&>(out).bytes);
    s.out.reset();
    return bytes_out;
  }
  static_cast<FileSink&>(out).close();
  s.out.reset();
  if (std::rename(s.temp_path.c_str(), s.o.path.c_str()) != 0) fail("io", s.o.path + ": cannot move the finished index into place: " + std::strerror(errno));
  s.temp_path.clear();
  return {};
}

}  // namespace jamba::retrieval
