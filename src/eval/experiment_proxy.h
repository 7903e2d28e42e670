// Step 4: proxy robustness (Figure 2). K noise members of the target act as the "drafts"; their
// EU_hat is computed against the unperturbed target ("orig") and against p_mix ("pmix") and
// compared with the EU of a large target family (the ground truth), over several noise draws.
#pragma once
#include <filesystem>

#include "eval/experiment_methods.h"

namespace drafteu::eval {

// Writes dir/results.json: {"orig"|"pmix": {"k3": {rmse_mean, rmse_std, spearman_mean, ...,
// runs}}}.
void run_proxy(const ExperimentConfig& c, MethodModels& models, const std::filesystem::path& dir);

}  // namespace drafteu::eval
