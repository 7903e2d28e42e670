#include "eval/experiment_detection.h"

#include <algorithm>
#include <cmath>

#include "eval/logistic.h"
#include "eval/metrics.h"
#include "uncertainty/aggregate.h"
#include "util/file.h"
#include "util/json.h"
#include "util/progress.h"

namespace drafteu::eval {

using json = nlohmann::json;
namespace unc = drafteu::uncertainty;

const std::vector<std::string>& detection_methods() {
  static const std::vector<std::string> m{"ddd", "untrained", "tokur"};
  return m;
}

namespace {

std::vector<double> features(const std::vector<double>& eu) {
  const auto t = torch::tensor(eu, torch::kFloat64);
  std::vector<double> f;
  for (auto a : {unc::Aggregation::Sum, unc::Aggregation::Mean, unc::Aggregation::Max})
    f.push_back(unc::aggregate_sequence(t, {}, a).item<double>());
  return f;
}

std::shared_ptr<Family> method_family(const ExperimentConfig& c, MethodModels& models,
                                      const std::string& method, uint64_t seed, ScoringModels& sm) {
  if (method == "tokur") return sm.target_family = models.tokur_family(c.tokur_samples, seed);
  sm.reference = models.reference(true);
  return sm.drafts = models.drafts(method == "ddd" ? c.detection_ddd : method, seed);
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
      std::vector<std::vector<double>> rows;
      for (const auto& a : answers) {
        per_token[method].push_back(
            score_answer(scorer, a, method == "tokur" ? EuField::True : EuField::Hat));
        rows.push_back(features(per_token[method].back()));
      }
      std::vector<std::vector<double>> train_x, test_x;
      std::vector<int> train_y, test_y, test_ok;
      for (size_t i = 0; i < rows.size(); ++i) {
        if (in_train[i]) {
          train_x.push_back(rows[i]);
          train_y.push_back(wrong[i]);
        } else {
          test_x.push_back(rows[i]);
          test_y.push_back(wrong[i]);
          test_ok.push_back(correct[i]);
        }
      }
      const auto model = fit_logistic(train_x, train_y, {"eu_sum", "eu_mean", "eu_max"});
      const auto prob = model.predict_all(test_x);
      const json r = {{"set", s},
                      {"auroc", auroc(prob, test_y)},
                      {"ece", expected_calibration_error(prob, test_y, 15)},
                      {"brier", brier_score(prob, test_y)},
                      {"prr", prediction_rejection_ratio(prob, test_ok)},
                      {"model", model.to_json()}};
      for (const char* k : {"auroc", "ece", "brier", "prr"})
        metric[method][k].push_back(r[k].is_number() ? r[k].get<double>() : std::nan(""));
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
                          {"eu", eu}}) +
               "\n";
    }
  }
  bar.finish();
  json out = json::object();
  for (const auto& m : methods) {
    json j;
    for (const char* k : {"auroc", "ece", "brier", "prr"}) put_mean_std(j, k, metric[m][k]);
    j["sets"] = sets[m];
    out[m] = j;
  }
  out["accuracy"] = accuracy;
  write_file_atomic(dir / "results.json", out.dump(2) + "\n");
  write_file_atomic(dir / "answers.jsonl", lines);
}

}  // namespace drafteu::eval
