// What a run records about itself: the data file's SHA-256, the source commit (best effort) and
// manifest.json (config, seeds, data, final metrics), so a result can be traced to its inputs.
#pragma once
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace drafteu::distill {

std::string sha256_hex(std::string_view data);
std::string sha256_file(const std::filesystem::path& path);
// `git rev-parse HEAD` in the working directory; "" when git or a repository is missing.
std::string git_commit();

// Writes dir/manifest.json atomically: `fields` plus "git_commit", "created" and "drafteu".
void write_manifest(const std::filesystem::path& dir, nlohmann::json fields);

}  // namespace drafteu::distill
