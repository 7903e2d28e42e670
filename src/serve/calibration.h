// Logistic calibration of a sequence's EU into a probability that the answer is wrong.
//
// File format (JSON, one object):
//   {"feature": "eu_sum" | "eu_mean" | "eu_max", "coef": a, "intercept": b}
// feature names the sequence aggregate x of the per-token eu_hat over the generated tokens;
// p_error = sigmoid(a·x + b). Fit a and b offline (e.g. logistic regression of correctness
// labels on x); unknown keys are ignored, missing or mistyped ones are errors.
#pragma once
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "uncertainty/aggregate.h"

namespace drafteu::serve {

struct Calibration {
  uncertainty::Aggregation feature = uncertainty::Aggregation::Sum;
  double coef = 1.0;
  double intercept = 0.0;

  double p_error(double eu_sum, double eu_mean, double eu_max) const;
  std::string feature_name() const;  // "eu_sum", ...

  // Throws drafteu::Error naming `source` and the field.
  static Calibration from_json(const nlohmann::json& j, const std::string& source);
  static Calibration load(const std::filesystem::path& path);
};

}  // namespace drafteu::serve
