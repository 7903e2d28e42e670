#include "eval/experiment_fidelity.h"

#include <map>
#include <ostream>

#include "family/ensemble.h"
#include "stats/metrics.h"
#include "util/file.h"
#include "util/json.h"
#include "util/progress.h"

namespace drafteu::eval {

using namespace stats;  // metrics and the logistic map (src/stats)

using json = nlohmann::json;

const std::vector<std::string>& fidelity_k6_methods() {
  static const std::vector<std::string> m{"untrained", "gkd",     "minillm", "idd",
                                          "fdd",       "ddd_2x3", "only_6"};
  return m;
}

namespace {

// One table's runs: per method, the pooled per-token EU_hat of every trial against the truth.
struct Table {
  std::map<std::string, std::vector<double>> rmse, rho, ccc;
  json runs = json::object();

  void add(const std::string& method, int64_t trial, uint64_t seed, const std::vector<double>& hat,
           const std::vector<double>& truth) {
    const double r = eval::rmse(hat, truth), s = spearman(hat, truth), k = concordance(hat, truth);
    rmse[method].push_back(r);
    rho[method].push_back(s);
    ccc[method].push_back(k);
    runs[method].push_back({{"trial", trial},
                            {"seed", seed},
                            {"rmse", r},
                            {"spearman", s},
                            {"ccc", k},
                            {"eu_hat_mean", mean(hat)}});
  }
  json to_json(const std::vector<std::string>& methods) const {
    json out = json::object();
    for (const auto& m : methods) {
      json j;
      put_mean_std(j, "rmse", rmse.at(m));
      put_mean_std(j, "spearman", rho.at(m));
      put_mean_std(j, "ccc", ccc.at(m));
      j["runs"] = runs.at(m);
      out[m] = j;
    }
    return out;
  }
};

// Per-token values of every answer, pooled; `per_answer` keeps them by answer and `jsd_per_answer`
// the estimator's variance term (JSD of the drafts) beside EU_hat.
std::vector<double> pooled_scores(TokenScorer& scorer, const std::vector<Answer>& answers,
                                  EuField field, std::vector<std::vector<double>>* per_answer,
                                  std::vector<std::vector<double>>* jsd_per_answer = nullptr) {
  std::vector<double> pooled;
  for (const auto& a : answers) {
    std::vector<double> jsd;
    auto v = score_answer(scorer, a, field, &jsd);
    pooled.insert(pooled.end(), v.begin(), v.end());
    if (per_answer) per_answer->push_back(std::move(v));
    if (jsd_per_answer) jsd_per_answer->push_back(std::move(jsd));
  }
  return pooled;
}

}  // namespace

void run_fidelity(const ExperimentConfig& c, MethodModels& models, const std::filesystem::path& dir,
                  std::ostream*) {
  const auto& methods = fidelity_methods();
  const auto& k6 = fidelity_k6_methods();
  Table table1, table_k6;
  std::vector<double> true_means, draft_kls;
  std::string tokens;
  ScoringModels truth_models;
  truth_models.target_family = models.target_family(c.members, c.seed);  // the teachers' members
  TokenScorer truth(truth_models);
  const auto pmix = models.reference(true);
  // KL(q_draft ‖ p_target) per token: EU_hat of the one untrained draft against the target.
  ScoringModels gap_models;
  gap_models.drafts = std::make_shared<Ensemble>(Ensemble::of_one(models.draft_base()));
  gap_models.reference = models.reference(false);
  TokenScorer gap(gap_models);
  const auto total = c.trials * static_cast<int64_t>(methods.size() + k6.size());
  ProgressBar bar("fidelity", total, "method-trials");
  int64_t done = 0;
  for (int64_t t = 0; t < c.trials; ++t) {
    const uint64_t seed = c.seed * 100 + static_cast<uint64_t>(t) + 1;
    const auto answers = models.sample_answers(c.eval_questions, seed);
    std::vector<std::vector<double>> eu_true;
    const auto pooled_true = pooled_scores(truth, answers, EuField::True, &eu_true);
    true_means.push_back(mean(pooled_true));
    draft_kls.push_back(mean(pooled_scores(gap, answers, EuField::Hat, nullptr)));
    std::map<std::string, std::vector<std::vector<double>>> eu_hat, jsd;
    auto score = [&](const std::string& method, int64_t k, std::vector<std::vector<double>>* keep,
                     std::vector<std::vector<double>>* keep_jsd) {
      ScoringModels sm;
      sm.drafts = models.drafts(method, seed, k);
      sm.reference = pmix;
      TokenScorer scorer(sm);
      bar.update(++done);
      return pooled_scores(scorer, answers, EuField::Hat, keep, keep_jsd);
    };
    for (const auto& m : methods)
      table1.add(m, t, seed, score(m, 3, &eu_hat[m], &jsd[m]), pooled_true);
    for (const auto& m : k6) table_k6.add(m, t, seed, score(m, 6, nullptr, nullptr), pooled_true);
    for (size_t i = 0; i < answers.size(); ++i)
      for (size_t p = 0; p < eu_true[i].size(); ++p) {
        json hat = json::object(), variance = json::object();
        for (const auto& m : methods) {
          hat[m] = eu_hat[m][i][p];
          variance[m] = jsd[m][i][p];
        }
        tokens += dump_json({{"trial", t},
                             {"question", answers[i].question},
                             {"correct", answers[i].correct},
                             {"index", p},
                             {"text", answers[i].pieces[p]},
                             {"eu_true", eu_true[i][p]},
                             {"eu_hat", hat},
                             {"jsd", variance}}) +
                  "\n";
      }
  }
  bar.finish();
  json out;
  out["methods"] = table1.to_json(methods);
  out["k6"] = table_k6.to_json(k6);
  out["true_eu_mean"] = mean(true_means);
  out["draft_kl_to_target"] = mean(draft_kls);
  write_file_atomic(dir / "results.json", out.dump(2) + "\n");
  write_file_atomic(dir / "tokens.jsonl", tokens);
}

}  // namespace drafteu::eval
