// GgufFile's typed metadata getters.
#include "model/io/gguf.h"
#include "model/io/gguf_detail.h"
#include "util/error.h"

namespace drafteu::io {
namespace {

template <typename... Args>
[[noreturn]] void bad_key(const GgufFile& f, std::string_view key, const Args&... args) {
  fail(f.path().string(), ": GGUF key '", key, "' ", args...);
}

const GgufValue& need(const GgufFile& f, std::string_view key) {
  auto it = f.metadata().find(std::string(key));
  if (it == f.metadata().end()) bad_key(f, key, "not found");
  return it->second;
}

std::string type_desc(const GgufValue& v) {
  if (v.type != GgufType::ARRAY) return std::string(gguf_type_name(v.type));
  return cat("array of ", gguf_type_name(v.elem_type));
}

int64_t to_int(const GgufFile& f, std::string_view key, const GgufScalar& s) {
  if (const auto* i = std::get_if<int64_t>(&s)) return *i;
  uint64_t u = std::get<uint64_t>(s);
  if (u > static_cast<uint64_t>(INT64_MAX)) bad_key(f, key, "value ", u, " does not fit int64");
  return static_cast<int64_t>(u);
}

double to_float(const GgufFile& f, std::string_view key, GgufType t, const GgufScalar& s) {
  if (t == GgufType::F32 || t == GgufType::F64) return std::get<double>(s);
  if (const auto* u = std::get_if<uint64_t>(&s)) return static_cast<double>(*u);
  return static_cast<double>(to_int(f, key, s));
}

bool is_number(GgufType t) {
  return detail::gguf_is_integer(t) || t == GgufType::F32 || t == GgufType::F64;
}

}  // namespace

bool GgufFile::has(std::string_view key) const {
  return kv_.count(std::string(key)) > 0;
}

std::string GgufFile::get_string(std::string_view key) const {
  const GgufValue& v = need(*this, key);
  if (v.type != GgufType::STRING) bad_key(*this, key, "is ", type_desc(v), ", expected string");
  return std::get<std::string>(v.scalar);
}

int64_t GgufFile::get_int(std::string_view key) const {
  const GgufValue& v = need(*this, key);
  if (!detail::gguf_is_integer(v.type))
    bad_key(*this, key, "is ", type_desc(v), ", expected an integer");
  return to_int(*this, key, v.scalar);
}

double GgufFile::get_float(std::string_view key) const {
  const GgufValue& v = need(*this, key);
  if (!is_number(v.type)) bad_key(*this, key, "is ", type_desc(v), ", expected a number");
  return to_float(*this, key, v.type, v.scalar);
}

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue& v = need(*this, key);
  if (v.type != GgufType::BOOL) bad_key(*this, key, "is ", type_desc(v), ", expected bool");
  return std::get<bool>(v.scalar);
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue& v = need(*this, key);
  if (v.type != GgufType::ARRAY || v.elem_type != GgufType::STRING)
    bad_key(*this, key, "is ", type_desc(v), ", expected array of string");
  std::vector<std::string> out;
  out.reserve(v.array.size());
  for (const auto& s : v.array) out.push_back(std::get<std::string>(s));
  return out;
}

std::vector<double> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue& v = need(*this, key);
  if (v.type != GgufType::ARRAY || !is_number(v.elem_type))
    bad_key(*this, key, "is ", type_desc(v), ", expected array of numbers");
  std::vector<double> out;
  out.reserve(v.array.size());
  for (const auto& s : v.array) out.push_back(to_float(*this, key, v.elem_type, s));
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue& v = need(*this, key);
  if (v.type != GgufType::ARRAY || !detail::gguf_is_integer(v.elem_type))
    bad_key(*this, key, "is ", type_desc(v), ", expected array of integers");
  std::vector<int64_t> out;
  out.reserve(v.array.size());
  for (const auto& s : v.array) out.push_back(to_int(*this, key, s));
  return out;
}

std::optional<int64_t> GgufFile::find_int(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_int(key);  // present but not an integer is an error, not "absent"
}

std::optional<double> GgufFile::find_float(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_float(key);
}

}  // namespace drafteu::io
