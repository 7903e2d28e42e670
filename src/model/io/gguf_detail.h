// GGUF constants shared by the reader and the writer (internal to drafteu_io).
#pragma once
#include <cstddef>
#include <cstdint>

#include "model/io/gguf.h"

namespace drafteu::io::detail {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kGgufVersion = 3;
constexpr size_t kGgmlMaxDims = 4;

// Encoded bytes of a scalar type; 0 for STRING/ARRAY (variable) and for unknown type numbers.
inline size_t gguf_fixed_size(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::BOOL:
      return 1;
    case GgufType::U16:
    case GgufType::I16:
      return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32:
      return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
      return 8;
    default:
      return 0;
  }
}

inline bool gguf_is_integer(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::U16:
    case GgufType::I16:
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::U64:
    case GgufType::I64:
      return true;
    default:
      return false;
  }
}

inline bool gguf_is_signed(GgufType t) {
  return t == GgufType::I8 || t == GgufType::I16 || t == GgufType::I32 || t == GgufType::I64;
}

// Element size of the ggml tensor types we support, 0 for any other.
inline size_t ggml_elem_size(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32:
      return 4;
    case GgmlType::F16:
      return 2;
    case GgmlType::BF16:
      return 2;
  }
  return 0;
}

inline DType ggml_to_dtype(GgmlType t) {
  return t == GgmlType::F32 ? DType::F32 : t == GgmlType::F16 ? DType::F16 : DType::BF16;
}

}  // namespace drafteu::io::detail
