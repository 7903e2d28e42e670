#include "eval/experiment_cost.h"

#include <algorithm>
#include <chrono>

#include "family/low_rank_family.h"
#include "util/file.h"

namespace drafteu::eval {

using json = nlohmann::json;

const std::vector<std::string>& cost_methods() {
  static const std::vector<std::string> m{"target_family", "ddd", "untrained", "only_3", "tokur"};
  return m;
}

namespace {

// Parameters every member of a batched family passes through: its base plus its deltas.
double family_parameters(const Family& f, int64_t base) {
  const auto* lr = dynamic_cast<const LowRankFamily*>(&f);
  double total = 0;
  for (int64_t k = 0; k < f.size(); ++k)
    total += static_cast<double>(base + (lr ? MethodModels::delta_parameters(lr->member(k)) : 0));
  return total;
}

}  // namespace

void run_cost(const ExperimentConfig& c, MethodModels& models, const std::filesystem::path& dir) {
  const auto answers = models.sample_answers(c.cost_answers, c.seed * 100 + 99);
  int64_t tokens = 0;
  for (const auto& a : answers) tokens += static_cast<int64_t>(a.response.size());
  const uint64_t seed = c.seed * 100 + 1;
  const double pmix_params =
      static_cast<double>(models.target_parameters() + models.pmix_delta_parameters());
  json out = json::object();
  for (const auto& method : cost_methods()) {
    ScoringModels sm;
    double params = 0;
    int64_t forwards = 0;
    EuField field = EuField::Hat;
    if (method == "target_family" || method == "tokur") {
      sm.target_family = method == "tokur" ? models.tokur_family(c.tokur_samples, seed)
                                           : models.target_family(c.members, c.seed);
      params = family_parameters(*sm.target_family, models.target_parameters());
      forwards = sm.target_family->size();
      field = EuField::True;
    } else {
      sm.drafts = models.drafts(method == "ddd" ? c.detection_ddd : method, seed);
      sm.reference = models.reference(true);
      const Family& run = sm.drafts->forwarded();  // every draft, grouped or not
      params = family_parameters(run, models.draft_parameters()) + pmix_params;
      forwards = run.size() + 1;
    }
    TokenScorer scorer(sm);
    score_answer(scorer, answers.front(), field);  // warm-up (allocations, thread pool)
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& a : answers) score_answer(scorer, a, field);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out[method] = {{"flops_per_token", 2.0 * params},
                   {"seconds_per_token", secs / static_cast<double>(std::max<int64_t>(1, tokens))},
                   {"forwards_per_token", forwards},
                   {"parameters", params},
                   {"answer_tokens", tokens}};
  }
  out["formula"] =
      "flops_per_token = 2 * sum over the method's forwards of (base parameters + low-rank delta "
      "parameters); draft methods add one p_mix forward";
  write_file_atomic(dir / "results.json", out.dump(2) + "\n");
}

}  // namespace drafteu::eval
