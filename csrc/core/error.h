// Errors raised by native code; the binding turns them into typed JS errors by `kind`.
#pragma once
#include <stdexcept>
#include <string>

namespace jamba {

struct Error : std::runtime_error {
  std::string kind;  // "invalid_argument", "checkpoint", "aborted", "out_of_memory", "io"
  Error(std::string k, const std::string& msg) : std::runtime_error(msg), kind(std::move(k)) {}
};

[[noreturn]] inline void fail(const char* kind, const std::string& msg) { throw Error(kind, msg); }

}  // namespace jamba
