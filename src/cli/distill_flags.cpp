#include "cli/distill_flags.h"

#include "distill/config.h"
#include "util/error.h"

namespace drafteu::cli {

using json = nlohmann::json;

void add_distill_flags(CLI::App* cmd, DistillFlags& f, bool training) {
  cmd->add_option("--config", f.config, "JSON config file (flags override its fields)");
  cmd->add_option("--out", f.out, "output directory")->required();
  cmd->add_option("--target", f.target, "target model: HF directory, .gguf, or preset:NAME[:SEED]");
  cmd->add_option("--set", f.sets, "override a config field: key.path=JSON (repeatable)");
  cmd->add_option("--seed", f.seed, "random seed");
  cmd->add_flag("--quiet", f.quiet, "no progress output");
  if (!training) return;
  cmd->add_option("--data", f.data, "training samples (JSONL from gen-data)");
  cmd->add_option("--max-steps", f.max_steps, "cap on optimizer steps");
  cmd->add_option("--save-every", f.save_every, "checkpoint every N steps");
  cmd->add_option("--stop-after", f.stop_after, "end this run after N steps (resume later)");
  cmd->add_option(
         "--dtype", f.dtype,
         "f32 | bf16 (autocast: matmuls in bf16, weights f32) | auto (bf16 if the CPU has it)")
      ->check(CLI::IsMember({"f32", "bf16", "auto"}));
}

json resolve_config(const DistillFlags& f) {
  json c = f.config.empty() ? json::object() : distill::read_json_file(f.config);
  auto set_path = [&](const std::string& path, const json& value) {
    json* node = &c;
    size_t start = 0;
    while (true) {
      const size_t dot = path.find('.', start);
      const std::string key = path.substr(start, dot == std::string::npos ? dot : dot - start);
      if (key.empty()) fail("--set ", path, ": empty key");
      if (dot == std::string::npos) {
        (*node)[key] = value;
        return;
      }
      if (!node->contains(key)) (*node)[key] = json::object();
      node = &(*node)[key];
      if (!node->is_object()) fail("--set ", path, ": '", key, "' is not an object");
      start = dot + 1;
    }
  };
  for (const auto& s : f.sets) {
    const auto eq = s.find('=');
    if (eq == std::string::npos) fail("--set ", s, ": expected key.path=value");
    json value;
    try {
      value = json::parse(s.substr(eq + 1));
    } catch (const json::exception&) {
      value = s.substr(eq + 1);  // a bare string
    }
    set_path(s.substr(0, eq), value);
  }
  if (!f.target.empty()) c["target"] = f.target;
  if (!f.data.empty()) c["data"] = f.data;
  if (f.seed) set_path("train.seed", *f.seed), c["seed"] = *f.seed;
  if (f.max_steps) set_path("train.max_steps", *f.max_steps);
  if (f.save_every) set_path("train.save_every", *f.save_every);
  if (f.stop_after) set_path("train.stop_after", *f.stop_after);
  if (!f.dtype.empty()) set_path("train.dtype", f.dtype);
  return c;
}

std::string config_string(const json& config, const char* key) {
  if (!config.contains(key)) return "";
  if (!config[key].is_string()) fail("config: field '", key, "' must be a string");
  return config[key].get<std::string>();
}

}  // namespace drafteu::cli
