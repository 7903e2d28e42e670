// The safetensors format, exactly: u64 little-endian header size N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data
// buffer; offsets are relative to the buffer's start. Readers validate everything before use.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "model/io/dtype.h"
#include "util/file.h"

namespace drafteu::io {

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // row-major (C order), as PyTorch sees it
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t numel() const;
};

// One .safetensors file, memory-mapped. Every error names the file (and the tensor or field).
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  const std::filesystem::path& path() const { return map_.path(); }
  const std::vector<TensorView>& tensors() const { return tensors_; }  // in file (offset) order
  const TensorView* find(std::string_view name) const;                 // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  MappedFile map_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;  // index into tensors_
  std::map<std::string, std::string> metadata_;
};

// A Hugging Face checkpoint directory: model.safetensors, or the shards listed by
// model.safetensors.index.json ("weight_map": {tensor: shard file}).
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::filesystem::path& dir);
  const TensorView* find(std::string_view name) const;
  // Throws drafteu::Error naming the checkpoint and the tensor when absent.
  const TensorView& get(std::string_view name) const;
  std::vector<std::string> names() const;
  std::string describe() const;  // path(s) for error messages

 private:
  std::filesystem::path dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, const TensorView*, std::less<>> index_;
};

struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // numel * dtype_size bytes, already in `dtype`
  size_t nbytes = 0;
};

// Writes one file atomically, streaming (temp + fsync + rename). The header is padded with spaces
// to a multiple of 8 and tensors are packed without holes (readers reject holes), ordered by
// element size, largest first (stable), so each tensor is aligned to its element size.
// Throws drafteu::Error on duplicate/empty names or nbytes != numel * dtype_size.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes model.safetensors, or model-0000i-of-0000n.safetensors shards plus
// model.safetensors.index.json when the total exceeds max_shard_bytes (creates `dir`; removes a
// stale index.json when writing a single file, since readers prefer the index).
void write_safetensors_checkpoint(const std::filesystem::path& dir,
                                  const std::vector<TensorToWrite>& tensors,
                                  size_t max_shard_bytes = size_t{5} << 30,
                                  const std::map<std::string, std::string>& metadata = {});

}  // namespace drafteu::io
