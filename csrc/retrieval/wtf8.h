// WTF-8 (simonsapin.github.io/wtf-8): UTF-8 that also carries a lone surrogate, as the three
// bytes of its code point. JavaScript strings may hold one; a term or a stored passage goes
// through the index and back unchanged.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace jamba::retrieval {

// The code point at s[i] (a lone surrogate stands for itself, as in Java and JavaScript).
inline uint32_t code_point_at(const char16_t* s, size_t n, size_t i, size_t& width) {
  const uint32_t c = s[i];
  if (c >= 0xD800 && c < 0xDC00 && i + 1 < n && s[i + 1] >= 0xDC00 && s[i + 1] < 0xE000) {
    width = 2;
    return 0x10000 + ((c - 0xD800) << 10) + (uint32_t(s[i + 1]) - 0xDC00);
  }
  width = 1;
  return c;
}

inline void append_wtf8(std::string& out, const char16_t* s, size_t n) {
  for (size_t i = 0; i < n;) {
    size_t w;
    const uint32_t cp = code_point_at(s, n, i, w);
    i += w;
    if (cp < 0x80) {
      out.push_back(char(cp));
    } else if (cp < 0x800) {
      out.push_back(char(0xC0 | (cp >> 6)));
      out.push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(char(0xE0 | (cp >> 12)));
      out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(char(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(char(0xF0 | (cp >> 18)));
      out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(char(0x80 | (cp & 0x3F)));
    }
  }
}

// Appends the UTF-16 of s[0..n); false if the bytes are not WTF-8 (a damaged index).
inline bool decode_wtf8(const uint8_t* s, size_t n, std::u16string& out) {
  for (size_t i = 0; i < n;) {
    const uint8_t c = s[i];
    uint32_t cp;
    size_t len;
    if (c < 0x80) {
      cp = c;
      len = 1;
    } else if ((c & 0xE0) == 0xC0) {
      cp = c & 0x1F;
      len = 2;
    } else if ((c & 0xF0) == 0xE0) {
      cp = c & 0x0F;
      len = 3;
    } else if ((c & 0xF8) == 0xF0) {
      cp = c & 0x07;
      len = 4;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t j = 1; j < len; ++j) {
      if ((s[i + j] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + j] & 0x3F);
    }
    if (cp > 0x10FFFF) return false;
    if (cp >= 0x10000) {
      out.push_back(char16_t(0xD800 + ((cp - 0x10000) >> 10)));
      out.push_back(char16_t(0xDC00 + ((cp - 0x10000) & 0x3FF)));
    } else {
      out.push_back(char16_t(cp));
    }
    i += len;
  }
  return true;
}

}  // namespace jamba::retrieval
