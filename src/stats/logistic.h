// Logistic regression for calibrating sequence-level uncertainty into P(answer is wrong):
// standardised features, Newton's method with a small L2 penalty, JSON calibration files.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace drafteu::stats {

struct LogisticOptions {
  // Minimises mean log-loss + l2/2 * |coef|^2 (intercept unpenalised) on standardised features.
  double l2 = 1e-3;
  int max_iterations = 100;
  double tolerance = 1e-12;  // on the Newton step's largest component
};

struct LogisticModel {
  std::vector<std::string> feature;  // names, one per column
  std::vector<double> coef;          // on standardised features
  double intercept = 0;
  std::vector<double> mean, std;  // standardisation (population std; 1 where constant)

  double predict(const std::vector<double>& x) const;  // P(y = 1 | x)
  std::vector<double> predict_all(const std::vector<std::vector<double>>& rows) const;

  nlohmann::json to_json() const;  // {"feature", "coef", "intercept", "mean", "std"}
  static LogisticModel from_json(const nlohmann::json& j, const std::string& source);
  void save(const std::filesystem::path& path) const;  // atomically
  static LogisticModel load(const std::filesystem::path& path);
};

// rows: N x D features, label: 0/1. Throws for empty or ragged input.
LogisticModel fit_logistic(const std::vector<std::vector<double>>& rows,
                           const std::vector<int>& label, std::vector<std::string> feature_names,
                           const LogisticOptions& options = {});

}  // namespace drafteu::stats
