// Step 3: EU fidelity. Target answers to test questions are sampled afresh in every trial; each
// response token gets the true EU of the target family and every method's EU_hat (reference
// p_mix), pooled per trial into RMSE, Spearman and CCC.
#pragma once
#include <filesystem>
#include <iosfwd>

#include <nlohmann/json.hpp>

#include "eval/experiment_methods.h"

namespace drafteu::eval {

// Table 11's methods, every one at K = 6.
const std::vector<std::string>& fidelity_k6_methods();

// Writes dir/results.json ({"methods": {METHOD: {rmse_mean, ..., runs}} at Table 1's settings,
// "k6": the same at K = 6, "true_eu_mean", "draft_kl_to_target"}) and dir/tokens.jsonl.
void run_fidelity(const ExperimentConfig& c, MethodModels& models, const std::filesystem::path& dir,
                  std::ostream* log);

}  // namespace drafteu::eval
