// A LoRA adapter's configuration (PEFT's LoraConfig fields this runtime uses) and which modules
// it targets, on plain module names: torch-free, so adapter_config.json's reader builds into the
// fuzz harness (tests/fuzz/fuzz_peft.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace drafteu {

// The largest |lora_alpha| an adapter may declare (see LoraConfig::validate).
inline constexpr double kMaxLoraAlpha = 1e6;

struct LoraConfig {
  int64_t r = 8;
  double alpha = 16.0;
  double dropout = 0.0;
  // Suffixes matched against module names (PEFT's list form)...
  std::vector<std::string> target_modules{"q_proj", "v_proj"};
  // ...or PEFT's string form: a regex that must match a whole module name ("all-linear": every
  // linear layer but lm_head), run by PCRE2 with a backtracking limit. Wins when set.
  std::string target_regex;
  bool use_rslora = false;  // scaling alpha/sqrt(r) instead of alpha/r
  std::string base_model_name_or_path;

  double scaling() const;
  void validate(const std::string& source) const;  // throws drafteu::Error naming source and field
};

// The names among `linear_names` that `config` targets, sorted; throws when a target matches
// nothing (or the regex is invalid or exceeds its backtracking limit).
std::vector<std::string> lora_target_names(const std::vector<std::string>& linear_names,
                                           const LoraConfig& config);

}  // namespace drafteu
