// The Porter stemmer as Lucene's PorterStemFilter applies it: Martin Porter's own C implementation
// (with its two departures from the published algorithm, -bli → -ble and -logi → -log), on UTF-16
// code units, words of one or two units left alone.
#pragma once
#include <string>

namespace jamba::retrieval {

// Stems `word` (lower case) in place.
void porter_stem(std::u16string& word);

}  // namespace jamba::retrieval
