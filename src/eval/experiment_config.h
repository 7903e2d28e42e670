// `drafteu experiment` configuration: presets (quick: the struct's defaults; tiny and full patch
// them), overridden field by field by an optional config file through one field table
// (util/config_fields.h: unknown fields, wrong types and out-of-range values name the field), and
// an up-front validation of everything the run will touch (paths, model configs, module names,
// GSM8K files) so a bad config fails before any work starts.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/testbed_options.h"
#include "util/config_fields.h"

namespace drafteu::eval {

// The config's "testbed" section: the sizes and budgets of the testbed the run trains when it has
// no real checkpoints; options() derives the rest (SwiGLU widths, warmups, dtype).
struct TestbedSection {
  int64_t n_train = 3000, n_test = 200;
  double difficulty = 0.0;
  int64_t min_steps = 2, max_steps = 2;
  // "fixed": one wording per solution line; "varied": each line opens with one of several
  // equivalent connectives (eval/testbed_task.h), so some positions are a matter of style.
  std::string phrasing = "fixed";
  int64_t vocab = 768;
  int64_t target_hidden = 96, target_layers = 3, target_steps = 1200;
  int64_t draft_hidden = 96, draft_layers = 2;
  // KL(draft ‖ target) per token on the quick preset: random init 0.013 after 1800 steps (0.07
  // after 600); the target's first and last layers as the starting point ("target_layers",
  // the way Llama 3.2 1B/3B began from Llama 3.1 8B) 0.0058 after the same 1800 steps.
  int64_t draft_steps = 1800;
  // Peak learning rate of the draft base's distillation. From the pruned target, 6e-3 first
  // undoes the inherited layers (KD loss 0.07 -> 0.09 in 200 steps) and ends 2.3x further from the
  // target than 2e-3 (quick: KL 0.0058 against 0.0025 nats/token); from random weights use 6e-3.
  double draft_lr = 2e-3;
  bool draft_distill = true;
  std::string draft_init = "target_layers";  // or "random"
  int64_t batch_size = 16;
  std::string dtype = "auto";

  TestbedOptions options() const;
};

// Task "stories": what the run samples from the real target and how the draft base is distilled.
struct StoriesOptions {
  int64_t samples = 384;       // stories sampled from the target (BOS, temperature 1)
  int64_t sample_tokens = 96;  // their length at most
  int64_t opening_tokens = 6;  // a prompt is a story's first tokens
  int64_t test_prompts = 32;   // the last stories' openings are the evaluation prompts
  int64_t draft_hidden = 32, draft_layers = 2, draft_steps = 600, batch_size = 16;
  // "random", or "target_layers": the target pruned to draft_layers of its layers (its width:
  // draft_hidden must then equal the target's hidden size).
  std::string draft_init = "random";
};

// Every field a config may set, with the quick preset's values; the other presets patch these.
struct ExperimentConfig {
  std::string preset = "quick";
  uint64_t seed = 1;
  // "arithmetic": the testbed, or real checkpoints with GSM8K; "stories": a real target
  // (models.target) prompted with openings of its own stories (eval/story_models).
  std::string task = "arithmetic";
  StoriesOptions stories;
  TestbedSection testbed;  // used when models.target is empty
  // Real checkpoints (HF directories, GSM8K JSONL) instead of the testbed.
  std::string target_model, draft_model, gsm8k_train, gsm8k_test;

  // Target family: the ground truth (M members of low-rank noise).
  int64_t members = 3;
  double sigma = 0.2;
  bool relative_noise = true;  // sigma relative to each weight's rms (family/noise.h)
  int64_t noise_rank = 8;
  std::vector<std::string> noise_modules{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                         "gate_proj", "up_proj", "down_proj"};

  // Distillation data and training.
  int64_t data_prompts = 48, max_new_tokens = 96;
  int64_t proxy_answers = 5;  // B.1: answers per question from each member, for p_mix
  int64_t draft_answers = 4;  // B.2: answers per question from the target, for the drafts
  int64_t proxy_steps = 80, draft_steps = 24, baseline_steps = 12, batch_size = 4;
  std::string osd_teachers = "family";   // distill::OsdConfig::teachers
  int64_t pool_splits = 3;               // S of the DDD pool (B.6: 3 partitions x M members)
  double init_sigma = 0.5;               // IDD/FDD initial noise (B.2)
  std::string init_noise_at = "lora_a";  // distill::DraftFamilyConfig::init_noise_at
  double proxy_lr = 3e-3;
  std::vector<std::string> proxy_modules{"q_proj", "v_proj"};  // p_mix's LoRA (Table 7)
  // "epochs": draft_steps is a DDD draft's budget and IDD/FDD drafts make as many passes over
  // their (larger) data, as Table 8's one epoch each; "steps": every draft takes draft_steps.
  std::string draft_budget = "epochs";
  double draft_lr = 3e-4;  // a fine-tune of a base this close; 3e-3 pulls DDD drafts away
  int64_t lora_rank = 16;

  // EU fidelity.
  int64_t eval_questions = 8, trials = 5;
  double draft_sigma = 0.1;  // noise of "K only" and untrained drafts
  // "member": the S×M drafts' EU is taken over M groups, each the mixture of the S drafts that
  // learnt one target member (§4.4's "imitated groups"); "none": over all S·M drafts.
  std::string group_drafts = "none";

  // Proxy robustness.
  std::vector<int64_t> proxy_k{3, 10};
  // The table's true EU: "family", the ground-truth family (§4.1: M members, the one p_mix's
  // teachers come from, B.1); "fresh", `proxy_truth_members` members of another seed.
  std::string proxy_truth = "family";
  int64_t proxy_truth_members = 20, proxy_runs = 5, proxy_questions = 4;

  // Hallucination detection.
  int64_t detection_questions = 80, detection_sets = 3;
  int64_t tokur_samples = 3;         // Table 6 charges TokUR K = 3 target passes
  int64_t tokur_extra_samples = 10;  // the extra row tokur_k10
  double train_fraction = 0.5;
  std::string detection_ddd = "ddd_2x3";
  std::string detection_aggregate = "mean";  // the one sequence-level feature (B.5)

  // Cost.
  int64_t cost_answers = 4;

  // The preset's JSON with the file's fields laid over it, as written (recorded in results.json;
  // the evaluation steps' cache keys hash its sections).
  nlohmann::json json;
  bool real_models() const { return !target_model.empty(); }
  bool stories_task() const { return task == "stories"; }
  bool has_labels() const { return !stories_task(); }  // detection needs right/wrong answers
};

const config::Fields<ExperimentConfig>& experiment_config_fields();

std::vector<std::string> experiment_preset_names();  // tiny, quick, full, stories260k
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
