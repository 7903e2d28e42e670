// Reading JSON files with errors that name the file; writing JSON from model text.
#pragma once
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

namespace drafteu {

// Deepest nesting of arrays/objects any reader accepts. Real files (tokenizer.json, configs,
// safetensors headers) stay below 10; nlohmann's dump(), copies and comparisons recurse once per
// level, so unbounded depth is a stack overflow.
inline constexpr int kMaxJsonDepth = 128;

// Throws drafteu::Error naming `source` when `text` nests arrays/objects deeper than `max_depth`.
// Scans bytes only (strings and escapes skipped), so it runs before any recursion can.
void check_json_depth(std::string_view text, const std::string& source,
                      int max_depth = kMaxJsonDepth);

// Parses `text` (depth-checked first); drafteu::Error naming `source` when it is malformed.
nlohmann::json parse_json(std::string_view text, const std::string& source);

// A JSON object from `path`; drafteu::Error naming the file when it is missing, malformed, nested
// too deeply or not an object.
nlohmann::json read_json_file(const std::filesystem::path& path);

// A short description of a value for error messages: scalars as JSON (at most ~60 bytes),
// arrays and objects by their size, so a hostile value never goes into a message whole.
std::string json_preview(const nlohmann::json& j);

// Compact JSON with invalid UTF-8 replaced by U+FFFD: generated text can end inside a character.
std::string dump_json(const nlohmann::json& j);

// Rejects a key of `j` outside `known` (and a non-object), naming `source`: the top-level shapes of
// the CLI's config files. Library configs declare field tables instead (util/config_fields.h).
void check_fields(const nlohmann::json& j, const std::string& source,
                  std::initializer_list<const char*> known);

// nlohmann's get<integer>() static_casts a JSON float, which is undefined behaviour out of the
// integer's range (1e300): an integer field (or every element of an integer array) must hold a
// JSON integer. Other types are left to get<T>()'s own checks.
template <typename T>
struct is_std_vector : std::false_type {};
template <typename T>
struct is_std_vector<std::vector<T>> : std::true_type {};
template <typename T>
bool json_integers_fit(const nlohmann::json& v) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return !v.is_number_float();
  } else if constexpr (is_std_vector<T>::value) {
    if (v.is_array())
      for (const auto& e : v)
        if (!json_integers_fit<typename T::value_type>(e)) return false;
    return true;
  } else {
    return true;
  }
}

}  // namespace drafteu
