#include "eval/experiment_proxy.h"

#include <cmath>

#include "stats/metrics.h"
#include "util/file.h"
#include "util/progress.h"

namespace drafteu::eval {

using namespace stats;  // metrics and the logistic map (src/stats)

using json = nlohmann::json;

namespace {
double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? std::nan("") : s / static_cast<double>(v.size());
}
}  // namespace

ProxyTruth proxy_truth(const ExperimentConfig& c) {
  if (c.proxy_truth == "fresh") return {c.proxy_truth_members, c.seed + 7777};
  return {c.members, c.seed};
}

void run_proxy(const ExperimentConfig& c, MethodModels& models, const std::filesystem::path& dir) {
  const auto answers = models.sample_answers(c.proxy_questions, c.seed * 100 + 1);
  ScoringModels tm;
  const auto truth_family = proxy_truth(c);
  tm.target_family = models.target_family(truth_family.members, truth_family.seed);
  TokenScorer truth_scorer(tm);
  std::vector<double> truth;
  for (const auto& a : answers) {
    const auto v = score_answer(truth_scorer, a, EuField::True);
    truth.insert(truth.end(), v.begin(), v.end());
  }
  json out = json::object();
  // Why a centre wins: mean_k KL(p_k ‖ c) = the members' EU + KL(p̄ ‖ c) for the truth's own
  // members, so a centre's offset from their mean p̄ is a floor under its bias. p_mix helps where
  // its miss KL(p̄ ‖ p_mix) is below the target's KL(p̄ ‖ p_orig) (the family's mean shift).
  json offset = {{"true_eu", mean_of(truth)}};
  for (const bool pmix : {false, true}) {
    ScoringModels om;
    om.drafts = tm.target_family;
    om.reference = models.reference(pmix);
    TokenScorer offset_scorer(om);
    std::vector<double> kl;
    for (const auto& a : answers) {
      const auto v = score_answer(offset_scorer, a, EuField::Bias);
      kl.insert(kl.end(), v.begin(), v.end());
    }
    offset[pmix ? "pmix" : "orig"] = mean_of(kl);
  }
  out["centre_offset"] = offset;
  ProgressBar bar("proxy", 2 * c.proxy_runs * static_cast<int64_t>(c.proxy_k.size()), "runs");
  int64_t done = 0;
  for (const bool pmix : {false, true}) {
    const auto reference = models.reference(pmix);
    for (const auto k : c.proxy_k) {
      std::vector<double> rmses, rhos;
      json runs = json::array();
      for (int64_t r = 0; r < c.proxy_runs; ++r) {
        ScoringModels sm;
        sm.drafts = models.target_family(k, c.seed + 1000 + static_cast<uint64_t>(r));
        sm.reference = reference;
        TokenScorer scorer(sm);
        std::vector<double> est;
        for (const auto& a : answers) {
          const auto v = score_answer(scorer, a, EuField::Hat);
          est.insert(est.end(), v.begin(), v.end());
        }
        rmses.push_back(rmse(est, truth));
        rhos.push_back(spearman(est, truth));
        runs.push_back({{"run", r}, {"rmse", rmses.back()}, {"spearman", rhos.back()}});
        bar.update(++done);
      }
      json j;
      put_mean_std(j, "rmse", rmses);
      put_mean_std(j, "spearman", rhos);
      j["runs"] = runs;
      out[pmix ? "pmix" : "orig"][std::string("k").append(std::to_string(k))] = j;
    }
  }
  bar.finish();
  write_file_atomic(dir / "results.json", out.dump(2) + "\n");
}

}  // namespace drafteu::eval
