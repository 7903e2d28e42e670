#include "serve/calibration.h"

#include "util/error.h"
#include "util/json.h"

namespace drafteu::serve {

double Calibration::p_error(double eu_sum, double eu_mean, double eu_max) const {
  std::vector<double> x;
  for (const auto& f : model.feature)
    x.push_back(f == "eu_sum" ? eu_sum : f == "eu_mean" ? eu_mean : eu_max);
  return model.predict(x);
}

Calibration Calibration::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) fail(source, ": calibration must be a JSON object");
  Calibration c;
  if (j.contains("coef") && j["coef"].is_number()) {  // the hand-written single-feature form
    if (!j.contains("feature") || !j["feature"].is_string())
      fail(source, ": calibration field 'feature' must be \"eu_sum\", \"eu_mean\" or \"eu_max\"");
    nlohmann::json full = {{"feature", {j["feature"]}},
                           {"coef", {j["coef"]}},
                           {"intercept", j.value("intercept", nlohmann::json())},
                           {"mean", {0.0}},
                           {"std", {1.0}}};
    c.model = stats::LogisticModel::from_json(full, source);
  } else {
    c.model = stats::LogisticModel::from_json(j, source);
  }
  if (c.model.feature.empty()) fail(source, ": calibration field 'feature' is missing");
  for (const auto& f : c.model.feature)
    if (f != "eu_sum" && f != "eu_mean" && f != "eu_max")
      fail(source, ": calibration feature '", f, "' is not eu_sum, eu_mean or eu_max");
  return c;
}

Calibration Calibration::load(const std::filesystem::path& path) {
  return from_json(read_json_file(path), path.string());
}

}  // namespace drafteu::serve
