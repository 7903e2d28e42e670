// Reading and validating one .safetensors file (the checkpoint directory is in
// safetensors_dir.cpp).
#include <algorithm>
#include <bit>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "model/io/checked.h"
#include "model/io/safetensors.h"
#include "util/error.h"
#include "util/json.h"

namespace drafteu::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "checkpoint readers assume little-endian");

// The reference implementation refuses headers above 100 MB; so do we, before parsing.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

template <typename... Args>
[[noreturn]] void bad(const std::filesystem::path& path, const Args&... args) {
  fail(path.string(), ": invalid safetensors file: ", args...);
}

// JSON numbers that must be non-negative integers (offsets, dims).
bool as_u64(const nlohmann::json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s;
}

TensorView parse_entry(const std::filesystem::path& path, const std::string& name,
                       const nlohmann::json& e, uint64_t buffer_size, uint64_t* begin_out) {
  if (!e.is_object()) bad(path, "tensor '", name, "': entry is not a JSON object");
  TensorView t;
  t.name = name;

  auto dt = e.find("dtype");
  if (dt == e.end() || !dt->is_string())
    bad(path, "tensor '", name, "': field 'dtype' is missing or not a string");
  if (!parse_dtype(dt->get_ref<const std::string&>(), &t.dtype))
    bad(path, "tensor '", name, "': unknown dtype '", dt->get_ref<const std::string&>(), "'");

  auto sh = e.find("shape");
  if (sh == e.end() || !sh->is_array())
    bad(path, "tensor '", name, "': field 'shape' is missing or not an array");
  for (const auto& d : *sh) {
    if (d.is_number_integer() && d.get<int64_t>() < 0)
      bad(path, "tensor '", name, "': field 'shape' has negative dimension ", d.get<int64_t>());
    uint64_t v = 0;
    if (!as_u64(d, &v) || v > static_cast<uint64_t>(INT64_MAX))
      bad(path, "tensor '", name, "': field 'shape' must hold non-negative integers, got ",
          json_preview(d));
    t.shape.push_back(static_cast<int64_t>(v));
  }

  auto off = e.find("data_offsets");
  uint64_t begin = 0, end = 0;
  if (off == e.end() || !off->is_array() || off->size() != 2 || !as_u64((*off)[0], &begin) ||
      !as_u64((*off)[1], &end))
    bad(path, "tensor '", name,
        "': field 'data_offsets' must be [begin, end] of non-negative integers");
  if (end < begin)
    bad(path, "tensor '", name, "': data_offsets end ", end, " is before begin ", begin);
  if (end > buffer_size)
    bad(path, "tensor '", name, "': data_offsets [", begin, ", ", end,
        "] run past the data buffer of ", buffer_size, " bytes");

  // Every prefix product must fit int64 too: a zero dimension after huge ones gives 0 bytes.
  auto expected = detail::checked_nbytes(t.shape, dtype_size(t.dtype));
  if (!expected || !detail::checked_numel_prefixes(t.shape))
    bad(path, "tensor '", name, "': shape is too large (overflow)");
  if (*expected != end - begin)
    bad(path, "tensor '", name, "': data_offsets span ", end - begin, " bytes but shape [",
        shape_text(t.shape), "] of ", dtype_name(t.dtype), " needs ", *expected);
  t.nbytes = static_cast<size_t>(end - begin);
  *begin_out = begin;
  return t;
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, d, &n))
      fail("tensor '", name, "': shape overflows int64");
  return n;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : map_(path) {
  const uint64_t size = map_.size();
  if (size < 8) bad(path, "file is ", size, " bytes, shorter than the 8-byte header length prefix");
  uint64_t header_len = 0;
  std::memcpy(&header_len, map_.data(), 8);
  if (header_len > size - 8)
    bad(path, "header length ", header_len, " is larger than the ", size - 8,
        " bytes that follow it");
  if (header_len > kMaxHeaderBytes)
    bad(path, "header length ", header_len, " exceeds the ", kMaxHeaderBytes, "-byte limit");
  const uint64_t buffer_size = size - 8 - header_len;
  const uint8_t* buffer = map_.data() + 8 + header_len;

  // nlohmann keeps the last of duplicate keys silently; catch top-level duplicates here.
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& j) {
    if (ev == nlohmann::json::parse_event_t::key && depth == 1 && j.is_string() &&
        !seen.insert(j.get<std::string>()).second && duplicate.empty())
      duplicate = j.get<std::string>();
    return true;
  };
  nlohmann::json header;
  const char* text = reinterpret_cast<const char*>(map_.data() + 8);
  check_json_depth(std::string_view(text, header_len), cat(path.string(), ": header"));
  try {
    header = nlohmann::json::parse(text, text + header_len, on_event);
  } catch (const nlohmann::json::exception& e) {
    bad(path, "header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) bad(path, "header is not a JSON object");
  if (!duplicate.empty()) bad(path, "tensor '", duplicate, "' appears twice in the header");

  std::vector<std::pair<uint64_t, TensorView>> entries;
  for (const auto& [name, e] : header.items()) {
    if (name == "__metadata__") {
      if (!e.is_object()) bad(path, "field '__metadata__' is not a JSON object");
      for (const auto& [k, v] : e.items()) {
        if (!v.is_string())
          bad(path, "field '__metadata__' key '", k, "' must map to a string, got ",
              json_preview(v));
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    uint64_t begin = 0;
    TensorView t = parse_entry(path, name, e, buffer_size, &begin);
    t.data = buffer + begin;
    entries.emplace_back(begin, std::move(t));
  }

  // The buffer must be covered exactly once: no overlap, no holes, no trailing bytes.
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second.nbytes < b.second.nbytes;
  });
  uint64_t cursor = 0;
  const std::string* prev = nullptr;
  for (const auto& [begin, t] : entries) {
    if (begin < cursor)
      bad(path, "tensor '", t.name, "' (data_offsets begin ", begin, ") overlaps tensor '", *prev,
          "' (which ends at ", cursor, ")");
    if (begin > cursor)
      bad(path, "tensor '", t.name, "' starts at data offset ", begin, ", leaving a gap of ",
          begin - cursor, " bytes after ",
          prev ? cat("tensor '", *prev, "'") : std::string("the header"));
    cursor = begin + t.nbytes;
    prev = &t.name;
  }
  if (cursor != buffer_size)
    bad(path, "tensors cover ", cursor, " bytes of the ", buffer_size,
        "-byte data buffer (trailing bytes)");

  tensors_.reserve(entries.size());
  for (auto& [begin, t] : entries) {
    by_name_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace drafteu::io
