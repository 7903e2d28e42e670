// The regime the fidelity numbers come from (§4.1): how large the target family's perturbation is
// (‖ΔW‖/‖W‖ per module) and what it leaves of the target (each member's greedy accuracy on the
// test questions, beside the target's on the same questions).
#pragma once
#include <filesystem>

#include "eval/experiment_methods.h"

namespace drafteu::eval {

// Writes dir/results.json: {"delta_rel": {MODULE: mean over layers and members},
// "member_accuracy": [...], "target_accuracy", "questions"}.
void run_regime(const ExperimentConfig& c, MethodModels& models, const std::filesystem::path& dir);

}  // namespace drafteu::eval
