// Where index bytes go and come from: an append-only sink (a file, or memory for an index built in
// memory), a buffered sequential reader (the writer's sorted runs), and a read-only mapping of a
// whole file (the index being read). Every failure is an Error of kind "io" naming the file.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

namespace jamba::retrieval {

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void append(const void* data, size_t n) = 0;
  // Overwrites bytes already appended (the header, once the sections are known).
  virtual void patch(uint64_t offset, const void* data, size_t n) = 0;
  virtual uint64_t size() const = 0;
  void append(std::string_view s) { append(s.data(), s.size()); }
  void pad_to(uint64_t multiple);  // zeros up to the next multiple
};

class StringSink final : public ByteSink {
 public:
  using ByteSink::append;
  void append(const void* data, size_t n) override;
  void patch(uint64_t offset, const void* data, size_t n) override;
  uint64_t size() const override { return bytes.size(); }
  std::string bytes;
};

class FileSink final : public ByteSink {
 public:
  explicit FileSink(std::string path);  // creates or truncates
  using ByteSink::append;
  ~FileSink() override;
  void append(const void* data, size_t n) override;
  void patch(uint64_t offset, const void* data, size_t n) override;
  uint64_t size() const override { return size_; }
  void close();  // flushes; errors are raised here rather than lost in the destructor
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  FILE* f_ = nullptr;
  uint64_t size_ = 0;
};

// Sequential reads of a file written by FileSink.
class FileSource {
 public:
  explicit FileSource(std::string path);
  ~FileSource();
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  bool at_end();
  void read(void* out, size_t n);  // exactly n bytes, or an "io" error
  uint64_t varint();

 private:
  std::string path_;
  FILE* f_ = nullptr;
};

// A whole file mapped read-only (or, for an index built in memory, the bytes themselves).
class ByteView {
 public:
  static std::shared_ptr<ByteView> map_file(const std::string& path);
  static std::shared_ptr<ByteView> own(std::string&& bytes);
  ~ByteView();
  ByteView(const ByteView&) = delete;
  ByteView& operator=(const ByteView&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  ByteView() = default;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  void* mapping_ = nullptr;
  std::string owned_;
};

}  // namespace jamba::retrieval
