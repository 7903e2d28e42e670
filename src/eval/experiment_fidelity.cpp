#include "eval/experiment_fidelity.h"

#include <map>
#include <ostream>

#include "eval/metrics.h"
#include "util/file.h"
#include "util/json.h"
#include "util/progress.h"

namespace drafteu::eval {

using json = nlohmann::json;

void run_fidelity(const ExperimentConfig& c, MethodModels& models, const std::filesystem::path& dir,
                  std::ostream*) {
  const auto& methods = fidelity_methods();
  std::map<std::string, std::vector<double>> rmses, rhos, cccs;
  json runs = json::object();
  std::string tokens;
  ScoringModels truth_models;
  truth_models.target_family = models.target_family(c.members, c.seed);  // the teachers' members
  TokenScorer truth(truth_models);
  const auto pmix = models.reference(true);
  ProgressBar bar("fidelity", c.trials * static_cast<int64_t>(methods.size()), "method-trials");
  for (int64_t t = 0; t < c.trials; ++t) {
    const uint64_t seed = c.seed * 100 + static_cast<uint64_t>(t) + 1;
    const auto answers = models.sample_answers(c.eval_questions, seed);
    std::vector<std::vector<double>> eu_true;
    std::vector<double> pooled_true;
    for (const auto& a : answers) {
      eu_true.push_back(score_answer(truth, a, EuField::True));
      pooled_true.insert(pooled_true.end(), eu_true.back().begin(), eu_true.back().end());
    }
    std::map<std::string, std::vector<std::vector<double>>> eu_hat;
    for (size_t m = 0; m < methods.size(); ++m) {
      ScoringModels sm;
      sm.drafts = models.drafts(methods[m], seed);
      sm.reference = pmix;
      TokenScorer scorer(sm);
      std::vector<double> pooled;
      for (const auto& a : answers) {
        eu_hat[methods[m]].push_back(score_answer(scorer, a, EuField::Hat));
        pooled.insert(pooled.end(), eu_hat[methods[m]].back().begin(),
                      eu_hat[methods[m]].back().end());
      }
      const double r = rmse(pooled, pooled_true), s = spearman(pooled, pooled_true),
                   k = concordance(pooled, pooled_true);
      rmses[methods[m]].push_back(r);
      rhos[methods[m]].push_back(s);
      cccs[methods[m]].push_back(k);
      runs[methods[m]].push_back(
          {{"trial", t}, {"seed", seed}, {"rmse", r}, {"spearman", s}, {"ccc", k}});
      bar.update(t * static_cast<int64_t>(methods.size()) + static_cast<int64_t>(m) + 1);
    }
    for (size_t i = 0; i < answers.size(); ++i)
      for (size_t p = 0; p < eu_true[i].size(); ++p) {
        json hat = json::object();
        for (const auto& m : methods) hat[m] = eu_hat[m][i][p];
        tokens += dump_json({{"trial", t},
                             {"question", answers[i].question},
                             {"correct", answers[i].correct},
                             {"index", p},
                             {"text", answers[i].pieces[p]},
                             {"eu_true", eu_true[i][p]},
                             {"eu_hat", hat}}) +
                  "\n";
      }
  }
  bar.finish();
  json out = json::object();
  for (const auto& m : methods) {
    json j;
    put_mean_std(j, "rmse", rmses[m]);
    put_mean_std(j, "spearman", rhos[m]);
    put_mean_std(j, "ccc", cccs[m]);
    j["runs"] = runs[m];
    out[m] = j;
  }
  write_file_atomic(dir / "results.json", out.dump(2) + "\n");
  write_file_atomic(dir / "tokens.jsonl", tokens);
}

}  // namespace drafteu::eval
