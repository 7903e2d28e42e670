// Steps 1-2 of `drafteu experiment`: the models (testbed or real checkpoints), the target family's
// noise, distillation data, p_mix by OSD, the draft families (DDD 1x3/2x3/3x3, IDD, FDD), the
// single draft of "K only" and the GKD/MiniLLM baselines, each a cached step.
#pragma once
#include <filesystem>
#include <iosfwd>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "eval/experiment_cache.h"
#include "eval/experiment_config.h"
#include "family/noise.h"
#include "model/tokenizer/tokenizer.h"

namespace drafteu::eval {

struct TrainedModels {
  std::filesystem::path target_dir, draft_dir, train_gsm8k, test_gsm8k;
  double target_accuracy = 0, draft_accuracy = 0;  // the testbed's greedy accuracy (NaN: real)
  std::filesystem::path proxy_adapter;             // p_mix's PEFT adapter
  std::map<std::string, std::filesystem::path> families;  // ddd (the S×M pool), idd, fdd
  std::filesystem::path gkd_adapter, minillm_adapter;
  // The training settings each step ran with (for the report's list of budget changes).
  nlohmann::json proxy_train, draft_train, baseline_train;
  std::string key;  // hash of every input above: the key evaluation steps depend on
};

// The ground-truth family's noise (the teachers of DDD/IDD/FDD learn the same members).
NoiseConfig target_noise(const ExperimentConfig& c);
// Noise of untrained and "K only" draft families, for trial seed `seed`.
NoiseConfig draft_noise(const ExperimentConfig& c, uint64_t seed);

// A question as the model is prompted: the testbed's "Question: ...\nAnswer:" (what its models
// learnt), the chat template with distill's instruction for chat models, or (task "stories") a
// story's opening as it stands.
std::vector<int64_t> encode_question(const ExperimentConfig& c, const Tokenizer& tok,
                                     const std::string& question);

TrainedModels prepare_models(const ExperimentConfig& c, StepCache& cache, std::ostream* log);

}  // namespace drafteu::eval
