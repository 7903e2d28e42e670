// Streams a file to a temp name beside `path`, then fsync, rename and fsync of the directory:
// readers never see a partial file, the new file survives a crash once commit() returns, and
// multi-GB checkpoints are written without building them in memory. The one atomic writer:
// write_file_atomic (util/file.h) is a whole string through it.
#pragma once
#include <cstddef>
#include <filesystem>
#include <string>

namespace drafteu {

class AtomicWriter {
 public:
  explicit AtomicWriter(const std::filesystem::path& path);
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;
  ~AtomicWriter();  // removes the temp file unless commit() succeeded

  void write(const void* data, size_t n);
  void write_zeros(size_t n);
  size_t written() const { return written_; }
  void commit();  // fsync, close, rename over `path`, fsync the directory

 private:
  void abort() noexcept;
  std::filesystem::path path_;
  std::filesystem::path tmp_;
  int fd_ = -1;
  size_t written_ = 0;
};

}  // namespace drafteu
