#include "text_analyzer.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_set>

#include "../core/error.h"
#include "porter_stem.h"
#include "wtf8.h"

namespace jamba::retrieval {

namespace {

// Lucene's scanner buffer: no token is longer; a longer one is cut here and the scan goes on.
constexpr size_t kMaxTokenUnits = 255;

struct Installed {
  TokenizerTables t;
  std::vector<uint8_t> bmp;            // class per BMP code point
  std::vector<int32_t> astral_starts;  // runs above the BMP
  std::vector<uint8_t> astral_classes;
  std::unordered_set<std::u16string> stop;
};

std::once_flag install_once;
std::atomic<const Installed*> installed{nullptr};

const Installed& tables() {
  const Installed* t = installed.load(std::memory_order_acquire);
  if (!t) fail("internal", "the tokenizer tables are not installed");
  return *t;
}

int class_of(const Installed& t, uint32_t cp) {
  if (cp < 0x10000) return t.bmp[cp];
  auto it = std::upper_bound(t.astral_starts.begin(), t.astral_starts.end(), int32_t(cp));
  return it == t.astral_starts.begin() ? 0 : t.astral_classes[size_t(it - t.astral_starts.begin()) - 1];
}

uint32_t java_lower(const Installed& t, uint32_t cp) {
  if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
  const auto& l = t.t.lower;
  size_t lo = 0, hi = l.size() / 2;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (uint32_t(l[2 * mid]) < cp) lo = mid + 1;
    else hi = mid;
  }
  return lo < l.size() / 2 && uint32_t(l[2 * lo]) == cp ? uint32_t(l[2 * lo + 1]) : cp;
}

void append_utf16(std::u16string& out, uint32_t cp) {
  if (cp < 0x10000) {
    out.push_back(char16_t(cp));
  } else {
    cp -= 0x10000;
    out.push_back(char16_t(0xD800 + (cp >> 10)));
    out.push_back(char16_t(0xDC00 + (cp & 0x3FF)));
  }
}

template <typename Emit>
void scan(const Installed& t, const char16_t* text, size_t n, Emit&& emit) {
  const int C = t.t.classes;
  size_t pos = 0;
  while (pos < n) {
    const size_t start = pos, limit = std::min(n, start + kMaxTokenUnits);
    int state = t.t.start, type = -1;
    size_t marked = 0, cur = start;
    bool matched = false;
    if (t.t.emits[size_t(state)] > -2) {
      matched = true;
      marked = cur;
      type = t.t.emits[size_t(state)];
    }
    while (cur < limit) {
      size_t w;
      uint32_t cp = code_point_at(text, n, cur, w);
      if (cur + w > limit) break;
      int next = t.t.trans[size_t(state) * size_t(C) + size_t(class_of(t, cp))];
      if (next < 0) break;
      state = next;
      cur += w;
      uint8_t acc = t.t.accepting[size_t(state)];
      if (acc & 1) {
        matched = true;
        marked = cur;
        type = t.t.emits[size_t(state)];
        if (acc & 8) break;
      }
    }
    // Every character matches at least the catch-all rule, so a match always ends past `start`.
    if (!matched || marked <= start) {
      size_t w;
      code_point_at(text, n, start, w);
      marked = start + w;
    }
    if (type >= 0) emit(start, marked);
    pos = marked;
  }
}

}  // namespace

void install_tokenizer_tables(const TokenizerTables& src) {
  std::call_once(install_once, [&] {
    if (src.classes < 1 || src.trans.size() % size_t(src.classes) != 0) fail("invalid_argument", "tokenizer tables: malformed transitions");
    const size_t states = src.trans.size() / size_t(src.classes);
    if (src.accepting.size() != states || src.emits.size() != states || src.start < 0 || size_t(src.start) >= states || src.cmap.size() % 2 ||
        src.lower.size() % 2)
      fail("invalid_argument", "tokenizer tables: inconsistent sizes");
    for (int16_t s : src.trans)
      if (s >= int(states)) fail("invalid_argument", "tokenizer tables: a transition leaves the automaton");
    auto t = std::make_unique<Installed>();
    t->t = src;
    t->stop.insert(src.stop_words.begin(), src.stop_words.end());
    t->bmp.assign(0x10000, 0);
    for (size_t i = 0; i < src.cmap.size(); i += 2) {
      const int64_t from = src.cmap[i], cls = src.cmap[i + 1], to = i + 2 < src.cmap.size() ? src.cmap[i + 2] : 0x110000;
      if (cls < 0 || cls >= src.classes || from < 0 || to < from) fail("invalid_argument", "tokenizer tables: malformed character map");
      if (from < 0x10000) std::fill(t->bmp.begin() + from, t->bmp.begin() + std::min<int64_t>(to, 0x10000), uint8_t(cls));
      if (to > 0x10000) {
        t->astral_starts.push_back(int32_t(std::max<int64_t>(from, 0x10000)));
        t->astral_classes.push_back(uint8_t(cls));
      }
    }
    installed.store(t.release(), std::memory_order_release);  // process lifetime, as the tables are
  });
}

bool tokenizer_tables_installed() { return installed.load(std::memory_order_acquire) != nullptr; }

void standard_tokens(const char16_t* text, size_t n, std::vector<std::pair<uint32_t, uint32_t>>& spans) {
  scan(tables(), text, n, [&](size_t b, size_t e) { spans.emplace_back(uint32_t(b), uint32_t(e)); });
}

void analyze(const char16_t* text, size_t n, AnalyzerKind kind, std::string& terms, std::vector<uint32_t>& ends) {
  const Installed& t = tables();
  std::u16string word;
  scan(t, text, n, [&](size_t b, size_t e) {
    size_t len = e - b;
    // EnglishPossessiveFilter: a trailing 's (any of Lucene's three apostrophes) goes.
    if (kind == AnalyzerKind::English && len >= 2 && (text[e - 1] == u's' || text[e - 1] == u'S')) {
      char16_t a = text[e - 2];
      if (a == u'\'' || a == u'\u2019' || a == u'\uFF07') len -= 2;
    }
    word.clear();
    for (size_t i = b; i < b + len;) {
      size_t w;
      uint32_t cp = code_point_at(text, b + len, i, w);
      append_utf16(word, java_lower(t, cp));
      i += w;
    }
    if (kind == AnalyzerKind::English) {
      if (word.empty() || t.stop.count(word)) return;
      porter_stem(word);
    }
    append_wtf8(terms, word.data(), word.size());
    ends.push_back(uint32_t(terms.size()));
  });
}

}  // namespace jamba::retrieval
