// libFuzzer target: the BM25 index reader (csrc/retrieval/) on arbitrary bytes. The checksums are
// made to match whatever the mutation did before the index is opened, so that the fuzzer gets past
// them into the dictionary, the postings, the block maxima and the stored passages. Every input
// must open and answer, or raise jamba::Error; anything else (a crash, a sanitizer report, a hang)
// is a bug.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "../csrc/core/error.h"
#include "../csrc/retrieval/bm25_search.h"
#include "../csrc/retrieval/byte_io.h"
#include "../csrc/retrieval/index_format.h"
#include "../csrc/retrieval/index_reader.h"

using namespace jamba::retrieval;

static void reseal(std::string& b) {
  if (b.size() < sizeof(FileHeader)) return;
  FileHeader h;
  std::memcpy(&h, b.data(), sizeof h);
  for (int i = 0; i < kSectionCount; ++i) {
    const Section& s = h.sections[i];
    if (s.offset <= b.size() && s.size <= b.size() - s.offset)
      h.section_sums[i] = section_checksum(reinterpret_cast<const uint8_t*>(b.data()) + s.offset, s.size);
  }
  h.checksum = fnv1a(&h, offsetof(FileHeader, checksum));
  std::memcpy(&b[0], &h, sizeof h);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  reseal(bytes);
  try {
    auto r = IndexReader::open(ByteView::own(std::move(bytes)), "fuzz");
    // The seed's words (fuzz/corpus/bm25): a long list, short ones, an absent one.
    const QueryTerms q = {{"cat", 1}, {"dog", 2}, {"run", 1}, {"zebra", 1}, {"bird", 3}};
    for (size_t k : {1, 3, 50}) {
      auto hits = bm25_top_k(*r, q, k);
      for (const auto& h : hits)
        if (h.doc >= r->header().passages) __builtin_trap();  // a hit names a passage that exists
    }
    for (uint32_t d = 0; d < r->header().passages && d < 8; ++d) r->passage(d);
    r->verify();
  } catch (const jamba::Error&) {
  }
  return 0;
}
