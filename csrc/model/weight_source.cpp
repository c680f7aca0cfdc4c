#include "weight_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "../core/error.h"

namespace jamba {

void TensorReader::read(const TensorSource& src, void* dst) {
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
