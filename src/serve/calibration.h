// Logistic calibration of a sequence's EU into a probability that the answer is wrong.
//
// The file is what `drafteu experiment` fits (stats::LogisticModel):
//   {"feature": ["eu_sum", ...], "coef": [...], "intercept": b, "mean": [...], "std": [...]}
// with features among eu_sum, eu_mean, eu_max (aggregates of the per-token eu_hat over the
// generated tokens), standardised by mean/std before the linear map. A hand-written single
// feature is accepted too: {"feature": "eu_sum", "coef": a, "intercept": b} -> sigmoid(a·x + b).
#pragma once
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "stats/logistic.h"

namespace drafteu::serve {

struct Calibration {
  stats::LogisticModel model;

  double p_error(double eu_sum, double eu_mean, double eu_max) const;

  // Throws drafteu::Error naming `source` and the field.
  static Calibration from_json(const nlohmann::json& j, const std::string& source);
  static Calibration load(const std::filesystem::path& path);
};

}  // namespace drafteu::serve
