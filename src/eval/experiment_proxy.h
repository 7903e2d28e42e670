// Step 4: proxy robustness (Figure 2). K noise members of the target act as the "drafts"; their
// EU_hat is computed against the unperturbed target ("orig") and against p_mix ("pmix") and
// compared with the true EU of the truth family (proxy.truth), over several noise draws.
#pragma once
#include <filesystem>

#include "eval/experiment_methods.h"

namespace drafteu::eval {

// proxy.truth "family": the ground-truth family (M members, seed); "fresh": proxy.truth_members
// members of seed + 7777. The K perturbations use seeds seed + 1000 + run, apart from either.
struct ProxyTruth {
  int64_t members;
  uint64_t seed;
};
ProxyTruth proxy_truth(const ExperimentConfig& c);

// Writes dir/results.json: {"orig"|"pmix": {"k3": {rmse_mean, rmse_std, spearman_mean, ...,
// runs}}}.
void run_proxy(const ExperimentConfig& c, MethodModels& models, const std::filesystem::path& dir);

}  // namespace drafteu::eval
