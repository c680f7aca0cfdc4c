#include "byte_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "../core/error.h"

namespace jamba::retrieval {

namespace {

[[noreturn]] void io_fail(const std::string& path, const char* what) { fail("io", path + ": " + what + ": " + std::strerror(errno)); }

}  // namespace

void ByteSink::pad_to(uint64_t multiple) {
  static const char zeros[64] = {};
  uint64_t n = (multiple - size() % multiple) % multiple;
  while (n) {
    const size_t step = n < sizeof zeros ? size_t(n) : sizeof zeros;
    append(zeros, step);
    n -= step;
  }
}

void StringSink::append(const void* data, size_t n) { bytes.append(static_cast<const char*>(data), n); }

void StringSink::patch(uint64_t offset, const void* data, size_t n) {
  if (offset + n > bytes.size()) fail("internal", "patch past the end of the index");
  std::memcpy(&bytes[offset], data, n);
}

FileSink::FileSink(std::string path) : path_(std::move(path)) {
  f_ = std::fopen(path_.c_str(), "wb");
  if (!f_) io_fail(path_, "cannot create");
  std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
}

FileSink::~FileSink() {
  if (f_) std::fclose(f_);
}

void FileSink::append(const void* data, size_t n) {
  if (n && std::fwrite(data, 1, n, f_) != n) io_fail(path_, "cannot write");
  size_ += n;
}

void FileSink::patch(uint64_t offset, const void* data, size_t n) {
  if (std::fseek(f_, long(offset), SEEK_SET) != 0 || std::fwrite(data, 1, n, f_) != n || std::fseek(f_, 0, SEEK_END) != 0) io_fail(path_, "cannot write");
}

void FileSink::close() {
  if (!f_) return;
  FILE* f = f_;
  f_ = nullptr;
  if (std::fflush(f) != 0 || fsync(fileno(f)) != 0) {
    std::fclose(f);
    io_fail(path_, "cannot write");
  }
  if (std::fclose(f) != 0) io_fail(path_, "cannot close");
}

FileSource::FileSource(std::string path) : path_(std::move(path)) {
  f_ = std::fopen(path_.c_str(), "rb");
  if (!f_) io_fail(path_, "cannot open");
  std::setvbuf(f_, nullptr, _IOFBF, 1 << 18);
}

FileSource::~FileSource() {
  if (f_) std::fclose(f_);
}

bool FileSource::at_end() {
  const int c = std::fgetc(f_);
  if (c == EOF) return true;
  std::ungetc(c, f_);
  return false;
}

void FileSource::read(void* out, size_t n) {
  if (n && std::fread(out, 1, n, f_) != n) fail("io", path_ + ": a temporary file of the index build ended early");
}

uint64_t FileSource::varint() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    const int c = std::fgetc(f_);
    if (c == EOF) fail("io", path_ + ": a temporary file of the index build ended early");
    v |= uint64_t(c & 0x7F) << shift;
    if (!(c & 0x80)) return v;
  }
  fail("io", path_ + ": a temporary file of the index build is damaged");
}

std::shared_ptr<ByteView> ByteView::map_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_fail(path, "cannot open");
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    io_fail(path, "cannot read");
  }
  std::shared_ptr<ByteView> v(new ByteView());
  v->size_ = uint64_t(st.st_size);
  if (v->size_ > 0) {
    void* m = mmap(nullptr, v->size_, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
      ::close(fd);
      io_fail(path, "cannot map");
    }
    v->mapping_ = m;
    v->data_ = static_cast<const uint8_t*>(m);
  }
  ::close(fd);
  return v;
}

std::shared_ptr<ByteView> ByteView::own(std::string&& bytes) {
  std::shared_ptr<ByteView> v(new ByteView());
  v->owned_ = std::move(bytes);
  v->data_ = reinterpret_cast<const uint8_t*>(v->owned_.data());
  v->size_ = v->owned_.size();
  return v;
}

ByteView::~ByteView() {
  if (mapping_) munmap(mapping_, size_);
}

}  // namespace jamba::retrieval
