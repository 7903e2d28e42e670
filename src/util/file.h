// Whole-file reads, read-only memory maps and atomic writes (temp file, fsync, rename).
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace drafteu {

std::string read_text_file(const std::filesystem::path& path);

// Writes `data` to `path` so that readers see the old file or the whole new one, never a part
// (util/atomic_writer.h: temp file, fsync, rename, fsync of the directory).
void write_file_atomic(const std::filesystem::path& path, std::string_view data);

// Removes the entries of `dir` named ".tmp-<anything>-<pid>" whose process is gone (or a zombie):
// the work directories of builds that were killed (a rerun builds under its own pid, so nothing
// else would ever remove them). Those of live processes stay.
void remove_stale_temp_dirs(const std::filesystem::path& dir);

// A read-only memory map of a whole file; movable, not copyable.
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::filesystem::path& path);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void release();
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace drafteu
