// Text analysis for BM25 as Lucene's EnglishAnalyzer does it (Pyserini's analyzer, the In-Context
// RALM paper's retriever), step for step: Lucene's StandardTokenizer run from its own scanner
// tables, the English possessive filter, Java's per-code-point lower-casing, Lucene's English
// stop words and Lucene's Porter stemmer (porter_stem.h). "standard" stops after lower-casing.
//
// Text is UTF-16, as Java's and JavaScript's strings are, so every rule that counts UTF-16 units
// (the scanner's 255-unit buffer, the stemmer) counts as Lucene counts. Terms come out as WTF-8:
// UTF-8 that also carries a lone surrogate, so that no term changes on the way to the index.
//
// The tables (third_party/lucene/standard-tokenizer.json, extracted from Lucene by
// scripts/lucene) and the stop words are handed over once per process by lib/retrieval/native.ts.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace jamba::retrieval {

struct TokenizerTables {
  int classes = 0;                 // character classes (columns of trans)
  int start = 0;                   // start state
  std::vector<int16_t> trans;      // states × classes; −1: no transition
  std::vector<uint8_t> accepting;  // per state: bit 0 accepting, bit 3 "stop at once" (JFlex's NOLOOK)
  std::vector<int8_t> emits;       // per state: the token type emitted, −1 skipped, −2 not accepting
  std::vector<int32_t> cmap;       // (first code point, class) runs in ascending order
  std::vector<int32_t> lower;      // (code point, Java's Character.toLowerCase of it) pairs, sorted
  std::vector<std::u16string> stop_words;  // the English analyzer's (Lucene's set)
};

// Installs the tables for every analyzer in the process; the first call wins (they never change).
void install_tokenizer_tables(const TokenizerTables& t);
bool tokenizer_tables_installed();

enum class AnalyzerKind : uint8_t { English = 0, Standard = 1 };

// Appends the text's terms to `terms` (concatenated WTF-8) with their end offsets in `ends`.
// Thread-safe once the tables are installed.
void analyze(const char16_t* text, size_t n, AnalyzerKind kind, std::string& terms, std::vector<uint32_t>& ends);

// Lucene's StandardTokenizer alone: the tokens' [begin, end) UTF-16 offsets.
void standard_tokens(const char16_t* text, size_t n, std::vector<std::pair<uint32_t, uint32_t>>& spans);

}  // namespace jamba::retrieval
