// What a run records about itself: the data file's SHA-256, drafteu's commit (build_commit) and
// manifest.json (config, seeds, data, final metrics), so a result can be traced to its inputs.
#pragma once
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace drafteu::distill {

// Lower-case hex SHA-256 (OpenSSL).
std::string sha256_hex(std::string_view data);
std::string sha256_file(const std::filesystem::path& path);

// Writes dir/manifest.json atomically: `fields` plus "git_commit" (drafteu's own, taken when the
// build was configured), "created" and "drafteu".
void write_manifest(const std::filesystem::path& dir, nlohmann::json fields);

}  // namespace drafteu::distill
