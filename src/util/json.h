// Reading JSON files with errors that name the file; writing JSON from model text.
#pragma once
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>

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

}  // namespace drafteu
