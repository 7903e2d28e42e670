#include "eval/experiment_detection.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>

#include "stats/logistic.h"
#include "stats/metrics.h"
#include "uncertainty/aggregate.h"
#include "util/file.h"
#include "util/json.h"
#include "util/progress.h"

namespace drafteu::eval {

using namespace stats;  // metrics and the logistic map (src/stats)

using json = nlohmann::json;
namespace unc = drafteu::uncertainty;

const std::vector<std::string>& detection_methods() {
  static const std::vector<std::string> m{"ddd", "untrained", "tokur", "tokur_k10"};
  return m;
}

namespace {

// CPU seconds of the whole process (every thread): steadier than wall time on a shared machine.
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

std::vector<double> features(const std::vector<double>& eu) {
  const auto t = torch::tensor(eu, torch::kFloat64);
  std::vector<double> f;
  for (auto a : {unc::Aggregation::Sum, unc::Aggregation::Mean, unc::Aggregation::Max})
    f.push_back(unc::aggregate_sequence(t, {}, a).item<double>());
  return f;
}

// The index of the configured aggregate among features()' (sum, mean, max).
size_t feature_index(const std::string& aggregate) {
  return aggregate == "sum" ? 0 : aggregate == "mean" ? 1 : 2;
}

// TokUR scores its own family (K target passes); the drafts score against p_mix. Untrained drafts
// get as many drafts as DDD (Table 2 charges them the same cost).
std::shared_ptr<Family> method_family(const ExperimentConfig& c, MethodModels& models,
                                      const std::string& method, uint64_t seed, ScoringModels& sm) {
  if (method == "tokur") return sm.target_family = models.tokur_family(c.tokur_samples, seed);
  if (method == "tokur_k10")
    return sm.target_family = models.tokur_family(c.tokur_extra_samples, seed);
  sm.reference = models.reference(true);
  if (method == "ddd") return sm.drafts = models.drafts(c.detection_ddd, seed);
  const auto ddd = models.drafts(c.detection_ddd, seed);
  return sm.drafts = models.drafts(method, seed, ddd->forwarded().size());
}

json evaluate(const LogisticModel& model, const std::vector<std::vector<double>>& x,
              const std::vector<int>& wrong, const std::vector<int>& correct) {
  const auto prob = model.predict_all(x);
  return {{"auroc", auroc(prob, wrong)},
          {"ece", expected_calibration_error(prob, wrong, 15)},
          {"brier", brier_score(prob, wrong)},
          {"prr", prediction_rejection_ratio(prob, correct)},
          {"model", model.to_json()}};
}

// Stratified by label: each class puts its first `fraction` (at least one, and one short of all
// when it has two or more) into the train split, so both splits see both classes when they can.
std::vector<bool> stratified_split(const std::vector<int>& label, double fraction) {
  std::vector<bool> in_train(label.size(), false);
  for (int cls : {0, 1}) {
    std::vector<size_t> idx;
    for (size_t i = 0; i < label.size(); ++i)
      if (label[i] == cls) idx.push_back(i);
    if (idx.empty()) continue;
    size_t n = static_cast<size_t>(std::lround(fraction * static_cast<double>(idx.size())));
    n = idx.size() == 1 ? 1 : std::clamp<size_t>(n, 1, idx.size() - 1);
    for (size_t k = 0; k < n; ++k) in_train[idx[k]] = true;
  }
  return in_train;
}

}  // namespace

void run_detection(const ExperimentConfig& c, MethodModels& models,
                   const std::filesystem::path& dir) {
  const auto& methods = detection_methods();
  std::map<std::string, std::map<std::string, std::vector<double>>> metric;
  json sets = json::object(), accuracy = json::array();
  std::string lines;
  const size_t one_feature = feature_index(c.detection_aggregate);
  ProgressBar bar("detection", c.detection_sets * static_cast<int64_t>(methods.size()),
                  "method-sets");
  for (int64_t s = 0; s < c.detection_sets; ++s) {
    const uint64_t seed = c.seed * 100 + 50 + static_cast<uint64_t>(s);
    const auto answers = models.sample_answers(c.detection_questions, seed);
    std::vector<int> wrong, correct;
    for (const auto& a : answers) {
      wrong.push_back(a.correct ? 0 : 1);
      correct.push_back(a.correct ? 1 : 0);
    }
    accuracy.push_back(1.0 - mean(std::vector<double>(wrong.begin(), wrong.end())));
    const auto in_train = stratified_split(wrong, c.train_fraction);
    std::map<std::string, std::vector<std::vector<double>>> per_token;
    for (size_t m = 0; m < methods.size(); ++m) {
      const auto& method = methods[m];
      ScoringModels sm;
      method_family(c, models, method, seed, sm);
      TokenScorer scorer(sm);
      const bool truth = method.rfind("tokur", 0) == 0;
      const auto t0 = std::chrono::steady_clock::now();
      const double cpu0 = process_cpu_seconds();
      for (const auto& a : answers)
        per_token[method].push_back(score_answer(scorer, a, truth ? EuField::True : EuField::Hat));
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double cpu_secs = process_cpu_seconds() - cpu0;
      // B.5: one sequence-level score through a one-feature logistic map; the (sum, mean, max)
      // model is the extra "three_feature" entry.
      std::vector<std::vector<double>> one_x[2], three_x[2];
      std::vector<int> y[2], ok[2];
      for (size_t i = 0; i < answers.size(); ++i) {
        const int part = in_train[i] ? 0 : 1;
        const auto f = features(per_token[method][i]);
        one_x[part].push_back({f[one_feature]});
        three_x[part].push_back(f);
        y[part].push_back(wrong[i]);
        ok[part].push_back(correct[i]);
      }
      const auto one = fit_logistic(one_x[0], y[0], {"eu_" + c.detection_aggregate});
      const auto three = fit_logistic(three_x[0], y[0], {"eu_sum", "eu_mean", "eu_max"});
      json r = evaluate(one, one_x[1], y[1], ok[1]);
      r["set"] = s;
      r["seconds"] = secs;
      r["cpu_seconds"] = cpu_secs;
      r["three_feature"] = evaluate(three, three_x[1], y[1], ok[1]);
      for (const char* k : {"auroc", "ece", "brier", "prr"})
        metric[method][k].push_back(r[k].is_number() ? r[k].get<double>() : std::nan(""));
      metric[method]["seconds"].push_back(secs);
      metric[method]["cpu_seconds"].push_back(cpu_secs);
      const auto& a3 = r["three_feature"]["auroc"];
      metric[method]["auroc_3feature"].push_back(a3.is_number() ? a3.get<double>() : std::nan(""));
      sets[method].push_back(r);
      bar.update(s * static_cast<int64_t>(methods.size()) + static_cast<int64_t>(m) + 1);
    }
    for (size_t i = 0; i < answers.size(); ++i) {
      json eu = json::object();
      for (const auto& m : methods) eu[m] = per_token[m][i];
      lines += dump_json({{"set", s},
                          {"question", answers[i].question},
                          {"split", in_train[i] ? "train" : "test"},
                          {"correct", answers[i].correct},
                          {"reference", answers[i].reference},
                          {"text", answers[i].text},
                          {"pieces", answers[i].pieces},
                          {"prompt_ids", answers[i].prompt},
                          {"ids", answers[i].response},
                          {"eu", eu}}) +
               "\n";
    }
  }
  bar.finish();
  json out = json::object();
  for (const auto& m : methods) {
    json j;
    for (const char* k :
         {"auroc", "ece", "brier", "prr", "seconds", "cpu_seconds", "auroc_3feature"})
      put_mean_std(j, k, metric[m][k]);
    j["sets"] = sets[m];
    out[m] = j;
  }
  out["accuracy"] = accuracy;
  out["aggregate"] = c.detection_aggregate;
  out["ddd_method"] = c.detection_ddd;
  out["tokur_samples"] = c.tokur_samples;
  write_file_atomic(dir / "results.json", out.dump(2) + "\n");
  write_file_atomic(dir / "answers.jsonl", lines);
}

}  // namespace drafteu::eval
