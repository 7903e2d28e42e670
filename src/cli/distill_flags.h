// Flags shared by the distillation subcommands: a JSON config file, an output directory, and
// overrides (named flags and generic --set key.path=value) applied on top of the file.
#pragma once
#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "util/config_fields.h"

namespace drafteu::cli {

struct DistillFlags {
  std::string config, out, target, data, dtype;
  std::vector<std::string> sets;
  std::optional<uint64_t> seed;
  std::optional<int64_t> max_steps, save_every, stop_after;
  bool quiet = false;
};

void add_distill_flags(CLI::App* cmd, DistillFlags& f, bool training);
// The config file (or {}) with the flags applied; "train.*" keys for the training flags.
nlohmann::json resolve_config(const DistillFlags& f);
// config[key] as a string ("" when absent); errors name the config and the key.
std::string config_string(const nlohmann::json& config, const char* key);
// out = config[key] when present and not null, typed as the field tables type fields
// (util/config_fields: 2.5 is no integer); errors name `source` and the key.
template <typename T>
void read_key(const nlohmann::json& config, const char* key, T& out, const std::string& source) {
  if (auto it = config.find(key); it != config.end() && !it->is_null())
    out = config::Codec<T>::read(*it, config::Where(source, key));
}

}  // namespace drafteu::cli
