// Reading JSON files with errors that name the file.
#pragma once
#include <filesystem>

#include <nlohmann/json.hpp>

namespace drafteu {

// A JSON object from `path`; drafteu::Error naming the file when it is missing, malformed or
// not an object.
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace drafteu
