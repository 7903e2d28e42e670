// `drafteu experiment` configuration: embedded presets (tiny, quick, full) as JSON, overridden
// field by field by an optional config file (unknown fields are errors naming the field), and an
// up-front validation of everything the run will touch (paths, model configs, module names, GSM8K
// files) so a bad config fails before any work starts.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/testbed_options.h"

namespace drafteu::eval {

struct ExperimentConfig {
  std::string preset;
  uint64_t seed = 1;
  TestbedOptions testbed;  // used when models.target is empty
  // Real checkpoints (HF directories, GSM8K JSONL) instead of the testbed.
  std::string target_model, draft_model, gsm8k_train, gsm8k_test;

  // Target family: the ground truth (M members of low-rank noise).
  int64_t members = 3;
  double sigma = 0.1;
  bool relative_noise = true;  // sigma relative to each weight's rms (family/noise.h)
  int64_t noise_rank = 8;
  std::vector<std::string> noise_modules;

  // Distillation data and training.
  int64_t data_prompts = 64, max_new_tokens = 96;
  int64_t proxy_answers = 5;  // B.1: answers per question from each member, for p_mix
  int64_t draft_answers = 4;  // B.2: answers per question from the target, for the drafts
  int64_t proxy_steps = 20, draft_steps = 10, baseline_steps = 10, batch_size = 4;
  std::string osd_teachers = "family";  // distill::OsdConfig::teachers
  int64_t pool_splits = 3;              // S of the DDD pool (B.6: 3 partitions x M members)
  double init_sigma = 0.5;              // IDD/FDD initial noise (B.2)
  double proxy_lr = 3e-3, draft_lr = 3e-3;
  int64_t lora_rank = 8;

  // EU fidelity.
  int64_t eval_questions = 8, trials = 5;
  double draft_sigma = 0.1;  // noise of "K only" and untrained drafts

  // Proxy robustness.
  std::vector<int64_t> proxy_k{3, 10};
  int64_t proxy_truth_members = 20, proxy_runs = 5, proxy_questions = 4;

  // Hallucination detection.
  int64_t detection_questions = 40, detection_sets = 3;
  int64_t tokur_samples = 3;         // Table 6 charges TokUR K = 3 target passes
  int64_t tokur_extra_samples = 10;  // the extra row tokur_k10
  double train_fraction = 0.5;
  std::string detection_ddd = "ddd_2x3";
  std::string detection_aggregate = "mean";  // the one sequence-level feature (B.5)

  // Cost.
  int64_t cost_answers = 4;

  nlohmann::json json;  // the merged config, as run (recorded in results.json)
  bool real_models() const { return !target_model.empty(); }
};

std::vector<std::string> experiment_preset_names();  // tiny, quick, full
nlohmann::json experiment_preset(const std::string& name);

// The preset (or the file's "preset" field when `preset` is empty; else "quick") overridden by
// `file` (optional). Errors name the file and the field.
ExperimentConfig load_experiment_config(const std::string& preset,
                                        const std::filesystem::path& file = {});
ExperimentConfig experiment_config_from_json(const nlohmann::json& overrides,
                                             const std::string& preset, const std::string& source);

// Checks every path and name the run will use; throws drafteu::Error naming the field.
void validate_experiment_config(const ExperimentConfig& config, const std::string& source);

// The fidelity methods, in report order.
const std::vector<std::string>& fidelity_methods();

}  // namespace drafteu::eval
