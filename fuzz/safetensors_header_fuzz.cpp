// libFuzzer target: the native safetensors header parser on arbitrary bytes. Every input must
// either parse or raise jamba::Error; anything else (a crash, a sanitizer report) is a bug.
#include <cstddef>
#include <cstdint>

#include "../csrc/core/error.h"
#include "../csrc/model/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    jamba::ParsedHeader h = jamba::parse_safetensors_header(data, size, size);
    // A header that parsed must describe ranges inside the input.
    for (const auto& t : h.tensors)
      if (8 + h.header_len + t.end > size) __builtin_trap();
  } catch (const jamba::Error&) {
  }
  return 0;
}
