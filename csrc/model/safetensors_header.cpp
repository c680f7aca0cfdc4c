#include "safetensors_header.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>

#include "../core/error.h"

namespace jamba {

namespace {

[[noreturn]] void bad(const std::string& why) { fail("checkpoint", "safetensors header: " + why); }

// A minimal recursive-descent JSON reader over [p, end) with a depth bound. It accepts exactly
// JSON; what the header needs is kept, other values (metadata) are skipped.
class Json {
 public:
  Json(const char* p, const char* end) : p_(p), end_(end) {}

  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool at_end() { ws(); return p_ == end_; }
  char peek() { ws(); if (p_ == end_) bad("unexpected end of JSON"); return *p_; }
  void expect(char c) {
    if (peek() != c) bad(std::string("expected '") + c + "'");
    ++p_;
  }

  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (p_ == end_) bad("unterminated string");
      char c = *p_++;
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) bad("control character in a string");
      if (c != '\\') { out.push_back(c); continue; }
      if (p_ == end_) bad("unterminated escape");
      char e = *p_++;
      switch (e) {
        case '"': case '\\': case '/': out.push_back(e); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          if (end_ - p_ < 4) bad("short \\u escape");
          unsigned v = 0;
          for (int i = 0; i < 4; ++i) {
            char h = *p_++;
            v <<= 4;
            if (h >= '0' && h <= '9') v |= unsigned(h - '0');
            else if (h >= 'a' && h <= 'f') v |= unsigned(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') v |= unsigned(h - 'A' + 10);
            else bad("bad \\u escape");
          }
          // Names are compared as bytes; keep a stable encoding of the code unit.
          if (v < 0x80) out.push_back(char(v));
          else if (v < 0x800) { out.push_back(char(0xc0 | (v >> 6))); out.push_back(char(0x80 | (v & 0x3f))); }
          else { out.push_back(char(0xe0 | (v >> 12))); out.push_back(char(0x80 | ((v >> 6) & 0x3f))); out.push_back(char(0x80 | (v & 0x3f))); }
          break;
        }
        default: bad("bad escape");
      }
    }
  }

  // A non-negative integer that fits in 63 bits.
  uint64_t uint() {
    ws();
    if (p_ == end_ || *p_ < '0' || *p_ > '9') bad("expected a non-negative integer");
    uint64_t v = 0;
    if (*p_ == '0' && end_ - p_ > 1 && p_[1] >= '0' && p_[1] <= '9') bad("leading zero in a number");
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
      if (v > (UINT64_C(1) << 62) / 5) bad("integer too large");
      v = v * 10 + uint64_t(*p_++ - '0');
    }
    if (p_ < end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) bad("expected an integer");
    return v;
  }

  std::vector<uint64_t> uint_array() {
    std::vector<uint64_t> out;
    expect('[');
    if (peek() == ']') { ++p_; return out; }
    while (true) {
      if (out.size() > 64) bad("array too long");
      out.push_back(uint());
      if (peek() == ']') { ++p_; return out; }
      expect(',');
    }
  }

  void skip_value(int depth) {
    if (depth > kMaxHeaderDepth) bad("JSON nests too deeply");
    char c = peek();
    if (c == '"') { string(); return; }
    if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++p_;
      if (peek() == close) { ++p_; return; }
      while (true) {
        if (c == '{') { string(); expect(':'); }
        skip_value(depth + 1);
        if (peek() == close) { ++p_; return; }
        expect(',');
      }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      ++p_;
      while (p_ < end_ && (std::isdigit(static_cast<unsigned char>(*p_)) || *p_ == '.' || *p_ == 'e' || *p_ == 'E' || *p_ == '+' || *p_ == '-')) ++p_;
      return;
    }
    for (const char* lit : {"true", "false", "null"}) {
      size_t n = std::strlen(lit);
      if (size_t(end_ - p_) >= n && std::memcmp(p_, lit, n) == 0) { p_ += n; return; }
    }
    bad("unexpected character in JSON");
  }

 private:
  const char* p_;
  const char* end_;
};

}  // namespace

size_t safetensors_dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

ParsedHeader parse_safetensors_header(const uint8_t* prefix, size_t prefix_len, uint64_t file_size) {
  if (file_size < 8 || prefix_len < 8) bad("file is shorter than 8 bytes");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];
  if (n > file_size - 8) bad("header length " + std::to_string(n) + " runs past the end of the file");
  if (n > kMaxHeaderBytes) bad("header length " + std::to_string(n) + " exceeds the limit");
  if (prefix_len < 8 + n) bad("header not fully read");
  ParsedHeader out;
  out.header_len = n;
  const char* b = reinterpret_cast<const char*>(prefix + 8);
  Json j(b, b + n);
  std::set<std::string> names;
  j.expect('{');
  if (j.peek() != '}') {
    while (true) {
      std::string key = j.string();
      j.expect(':');
      if (!names.insert(key).second) bad("tensor " + key + " is declared twice");
      if (key == "__metadata__") {
        j.skip_value(1);
      } else {
        HeaderEntry e;
        e.name = key;
        bool have_dtype = false, have_shape = false, have_offsets = false;
        j.expect('{');
        if (j.peek() != '}') {
          while (true) {
            std::string field = j.string();
            j.expect(':');
            if (field == "dtype" && !have_dtype) { e.dtype = j.string(); have_dtype = true; }
            else if (field == "shape" && !have_shape) {
              for (uint64_t d : j.uint_array()) e.shape.push_back(int64_t(d));
              have_shape = true;
            } else if (field == "data_offsets" && !have_offsets) {
              auto o = j.uint_array();
              if (o.size() != 2) bad("tensor " + key + ": data_offsets needs two numbers");
              e.begin = o[0];
              e.end = o[1];
              have_offsets = true;
            } else {
              bad("tensor " + key + ": unexpected or repeated field " + field);
            }
            if (j.peek() == '}') break;
            j.expect(',');
          }
        }
        j.expect('}');
        if (!have_dtype || !have_shape || !have_offsets) bad("tensor " + key + ": dtype, shape and data_offsets are required");
        const size_t es = safetensors_dtype_size(e.dtype);
        if (!es) bad("tensor " + key + ": unknown dtype " + e.dtype);
        unsigned __int128 numel = 1;
        for (int64_t d : e.shape) {
          numel *= uint64_t(d);
          if (numel >= (unsigned __int128)1 << 63) bad("tensor " + key + ": element count overflows 63 bits");
        }
        if (e.end < e.begin) bad("tensor " + key + ": data_offsets are reversed");
        if ((unsigned __int128)(e.end - e.begin) != numel * es) bad("tensor " + key + ": byte range disagrees with shape × dtype");
        out.tensors.push_back(std::move(e));
      }
      if (j.peek() == '}') break;
      j.expect(',');
    }
  }
  j.expect('}');
  if (!j.at_end()) bad("trailing characters after the header object");
  // The tensors must tile the data region exactly.
  std::vector<const HeaderEntry*> order;
  for (auto& e : out.tensors) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](auto* a, auto* c) { return a->begin < c->begin || (a->begin == c->begin && a->end < c->end); });
  uint64_t pos = 0;
  for (auto* e : order) {
    if (e->begin < pos) bad("tensor " + e->name + " overlaps another");
    if (e->begin > pos) bad("gap before tensor " + e->name);
    pos = e->end;
  }
  if (pos != file_size - 8 - n) bad("the data region is " + std::to_string(file_size - 8 - n) + " bytes but the tensors cover " + std::to_string(pos));
  return out;
}

}  // namespace jamba
