// GGUF v3 (llama.cpp's single-file format): header, typed key/value metadata, tensor infos,
// aligned tensor data. Reading validates every count, string length, type and offset.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "model/io/dtype.h"
#include "util/file.h"

namespace drafteu::io {

// GGUF metadata value types (gguf_type in ggml).
enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12
};

struct GgufArray;
// Integers are widened to int64/uint64, floats to double; the original type is kept alongside.
using GgufScalar = std::variant<int64_t, uint64_t, double, bool, std::string>;
struct GgufValue {
  GgufType type = GgufType::U32;
  GgufScalar scalar;                   // when type != ARRAY
  GgufType elem_type = GgufType::U32;  // when type == ARRAY
  std::vector<GgufScalar> array;       // when type == ARRAY
};

// ggml tensor types this project reads and writes (others, e.g. quantized ones, are rejected).
enum class GgmlType : uint32_t { F32 = 0, F16 = 1, BF16 = 30 };

std::string_view gguf_type_name(GgufType t);  // "u32", "string", ... ("?" when unknown)
std::string ggml_type_name(uint32_t type);    // "F32", "Q4_0", ... ("unknown" when unknown)

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> ne;     // ggml order: ne[0] is the fastest-varying dimension
  std::vector<int64_t> shape;  // row-major order (ne reversed), as PyTorch sees it
  DType dtype = DType::F32;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
};

class GgufFile {
 public:
  explicit GgufFile(const std::filesystem::path& path);
  const std::filesystem::path& path() const { return map_.path(); }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }  // general.alignment, default 32

  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  bool has(std::string_view key) const;
  // Typed getters: throw drafteu::Error naming the file and key when absent or of the wrong type.
  std::string get_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;   // any integer type
  double get_float(std::string_view key) const;  // F32/F64 (or an integer)
  bool get_bool(std::string_view key) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<double> get_float_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;
  // nullopt when absent; present with the wrong type still throws.
  std::optional<int64_t> find_int(std::string_view key) const;
  std::optional<double> find_float(std::string_view key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(std::string_view name) const;

 private:
  MappedFile map_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;  // the type metadata() returns
  std::vector<GgufTensor> tensors_;
};

struct GgufTensorToWrite {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> shape;  // row-major; written as ne = reversed(shape)
  const void* data = nullptr;  // already in `type`
  size_t nbytes = 0;
};

// Writes a GGUF v3 file atomically (streamed to a temp file, fsync, rename). When `alignment`
// is not 32, general.alignment (u32) is added unless `metadata` already holds the same value.
// Every tensor is padded to `alignment`, as llama.cpp's reader expects. Throws drafteu::Error on
// a value whose variant does not fit its GgufType, a bad shape/nbytes, or duplicate names.
void write_gguf(const std::filesystem::path& path, const std::map<std::string, GgufValue>& metadata,
                const std::vector<GgufTensorToWrite>& tensors, uint32_t alignment = 32);

}  // namespace drafteu::io
