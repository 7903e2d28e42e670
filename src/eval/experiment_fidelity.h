// Step 3: EU fidelity. Target answers to test questions are sampled afresh in every trial; each
// response token gets the true EU of the target family and every method's EU_hat (reference
// p_mix), pooled per trial into RMSE, Spearman and CCC.
#pragma once
#include <filesystem>
#include <iosfwd>

#include <nlohmann/json.hpp>

#include "eval/experiment_methods.h"

namespace drafteu::eval {

// Writes dir/results.json ({METHOD: {rmse_mean, ..., runs}}) and dir/tokens.jsonl.
void run_fidelity(const ExperimentConfig& c, MethodModels& models, const std::filesystem::path& dir,
                  std::ostream* log);

}  // namespace drafteu::eval
