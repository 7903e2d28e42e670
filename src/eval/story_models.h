// Task "stories" (the stories260k preset): a real pretrained target, prompted with the openings of
// stories it wrote itself, and a smaller draft base distilled from it on those stories (forward
// KL on its logits), as the paper's drafts were distilled from their target. Stories carry no
// right or wrong answer, so this task has no detection table.
#pragma once
#include <filesystem>
#include <iosfwd>

#include "eval/experiment_config.h"

namespace drafteu::eval {

// What build_story_models writes into a step directory.
struct StoryModels {
  std::filesystem::path target_dir;   // the target as an HF directory (converted from GGUF)
  std::filesystem::path draft_dir;    // the distilled draft base, same tokenizer
  std::filesystem::path train_jsonl;  // openings for the distillation data ("question" fields)
  std::filesystem::path test_jsonl;   // openings for the evaluation
  std::filesystem::path info_json;    // sizes, KD losses, timings
};

StoryModels story_models_in(const std::filesystem::path& dir);

// Samples c.stories.samples stories from c.target_model (from BOS, temperature 1, seeded by
// c.seed), splits their openings into train and test prompts, distils the draft base on the
// stories and writes everything under `dir`.
void build_story_models(const ExperimentConfig& c, const std::filesystem::path& dir,
                        std::ostream* log);

}  // namespace drafteu::eval
