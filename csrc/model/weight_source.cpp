#include "weight_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "../core/error.h"

namespace jamba {

const TensorReader::FileHeader& TensorReader::header_of(const std::string& file) {
  auto it = headers_.find(file);
  if (it != headers_.end()) return it->second;
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("checkpoint", file + ": cannot open (" + std::strerror(errno) + ")");
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail("checkpoint", file + ": cannot stat");
  }
  const uint64_t size = uint64_t(st.st_size);
  std::vector<uint8_t> prefix(size_t(std::min<uint64_t>(size, 8)));
  auto read_at = [&](uint8_t* p, size_t n, off_t off) {
    size_t got = 0;
    while (got < n) {
      ssize_t r = ::pread(fd, p + got, n - got, off + off_t(got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += size_t(r);
    }
    return got;
  };
  if (read_at(prefix.data(), prefix.size(), 0) == 8) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[size_t(i)];
    if (n <= std::min<uint64_t>(size - 8, kMaxHeaderBytes)) {
      prefix.resize(size_t(8 + n));
      if (read_at(prefix.data() + 8, size_t(n), 8) != n) prefix.resize(8);
    }
  }
  ::close(fd);
  ParsedHeader h;
  try {
    h = parse_safetensors_header(prefix.data(), prefix.size(), size);
  } catch (const Error& e) {
    fail("checkpoint", file + ": " + e.what());
  }
  FileHeader fh{8 + h.header_len, {}};
  for (auto& e : h.tensors) fh.tensors.emplace(e.name, e);
  return headers_.emplace(file, std::move(fh)).first->second;
}

void TensorReader::verify(const TensorSource& src) {
  const FileHeader& h = header_of(src.file);
  auto it = h.tensors.find(src.name);
  const std::string where = src.file + ": tensor " + src.name + ": ";
  if (it == h.tensors.end()) fail("checkpoint", where + "is not in the file's header");
  const HeaderEntry& e = it->second;
  const char* expect_dtype = src.dtype == DType::BF16 ? "BF16" : src.dtype == DType::F16 ? "F16" : src.dtype == DType::F32 ? "F32" : "?";
  if (e.dtype != expect_dtype || e.shape != src.shape || h.data_start + e.begin != src.offset || e.end - e.begin != src.nbytes)
    fail("checkpoint", where + "does not match the file's header (dtype, shape or byte range)");
}

void TensorReader::read(const TensorSource& src, void* dst) {
  verify(src);
  int fd = ::open(src.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("checkpoint", src.file + ": cannot open (" + std::strerror(errno) + ") reading tensor " + src.name);
  uint64_t done = 0;
  auto* out = static_cast<char*>(dst);
  while (done < src.nbytes) {
    ssize_t r = ::pread(fd, out + done, size_t(src.nbytes - done), off_t(src.offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      ::close(fd);
      fail("checkpoint", src.file + ": tensor " + src.name + " is truncated (read " + std::to_string(done) + " of " +
                             std::to_string(src.nbytes) + " bytes)");
    }
    done += uint64_t(r);
  }
  ::close(fd);
  done_ += src.nbytes;
  if (progress_) progress_(done_);
}

std::vector<float> TensorReader::read_f32(const TensorSource& src) {
  std::vector<char> raw(src.nbytes);
  read(src, raw.data());
  std::vector<float> out(src.nbytes / dtype_size(src.dtype));
  to_f32(src.dtype, raw.data(), out.data(), out.size());
  return out;
}

}  // namespace jamba
