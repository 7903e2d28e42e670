// Element types found in checkpoint files, and their conversion to float32.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace drafteu::io {

enum class DType { F32, F16, BF16, F64, I8, U8, I16, I32, I64, BOOL };

std::string_view dtype_name(DType t);                 // safetensors spelling: "F32", "BF16", ...
bool parse_dtype(std::string_view name, DType* out);  // false for an unknown name
size_t dtype_size(DType t);                           // bytes per element

// Converts n little-endian elements of `src` (F32, F16, BF16 or F64) to float32.
// Throws drafteu::Error for other dtypes.
void convert_to_f32(DType src_type, const void* src, float* dst, size_t n);
// float32 -> bf16 with round-to-nearest-even (NaN stays NaN).
void convert_f32_to_bf16(const float* src, uint16_t* dst, size_t n);
void convert_f32_to_f16(const float* src, uint16_t* dst, size_t n);

}  // namespace drafteu::io
