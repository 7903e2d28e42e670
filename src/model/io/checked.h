// Overflow-checked size arithmetic for validating untrusted headers (internal to drafteu_io).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace drafteu::io::detail {

// Product of non-negative dims times elem_size, or nullopt on a negative dim or overflow.
inline std::optional<size_t> checked_nbytes(const std::vector<int64_t>& dims, size_t elem_size) {
  size_t n = elem_size;
  for (int64_t d : dims) {
    if (d < 0) return std::nullopt;
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  }
  return n;
}

inline std::optional<int64_t> checked_numel(const std::vector<int64_t>& dims) {
  auto n = checked_nbytes(dims, 1);
  if (!n || *n > static_cast<size_t>(INT64_MAX)) return std::nullopt;
  return static_cast<int64_t>(*n);
}

// Whether every running product of `dims` (non-negative) fits int64, zeros included: a shape
// like [2^31, 2^32, 0] has 0 elements, but numel() arithmetic over it would overflow first.
inline bool checked_numel_prefixes(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) return false;
    if (d == 0) continue;
    if (__builtin_mul_overflow(n, d, &n)) return false;
  }
  return true;
}

}  // namespace drafteu::io::detail
