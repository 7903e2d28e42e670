// Step 6: cost per generated token of each EU method, by formula and by the clock.
//   FLOPs/token = 2 x (parameters a token passes through), summed over every forward the method
//   needs per token: M target members (ground truth), S TokUR samples of the target, or K drafts
//   plus one p_mix forward (the draft estimator). A member's parameters are its base's weights
//   plus its low-rank deltas (r x (in + out) per module); attention's context-length term is left
//   out, as in the usual 2N approximation.
//   seconds/token = wall time of teacher-forced scoring of sampled answers (prompt + answer in one
//   forward per family) divided by the answer tokens.
#pragma once
#include <filesystem>

#include "eval/experiment_methods.h"

namespace drafteu::eval {

const std::vector<std::string>& cost_methods();  // target_family, ddd, untrained, only_3, tokur

// Writes dir/results.json: {METHOD: {flops_per_token, seconds_per_token, forwards, ...}}.
void run_cost(const ExperimentConfig& c, MethodModels& models, const std::filesystem::path& dir);

}  // namespace drafteu::eval
