// Reading JSON files with errors that name the file; writing JSON from model text.
#pragma once
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace drafteu {

// A JSON object from `path`; drafteu::Error naming the file when it is missing, malformed or
// not an object.
nlohmann::json read_json_file(const std::filesystem::path& path);

// Compact JSON with invalid UTF-8 replaced by U+FFFD: generated text can end inside a character.
std::string dump_json(const nlohmann::json& j);

}  // namespace drafteu
