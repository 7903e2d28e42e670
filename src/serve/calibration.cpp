#include "serve/calibration.h"

#include <cmath>

#include "util/error.h"
#include "util/file.h"

namespace drafteu::serve {

double Calibration::p_error(double eu_sum, double eu_mean, double eu_max) const {
  using uncertainty::Aggregation;
  const double x = feature == Aggregation::Sum    ? eu_sum
                   : feature == Aggregation::Mean ? eu_mean
                                                  : eu_max;
  const double z = coef * x + intercept;
  // The two branches keep exp() from overflowing for large |z|.
  return z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z));
}

std::string Calibration::feature_name() const {
  return std::string("eu_") + uncertainty::to_string(feature);
}

Calibration Calibration::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) fail(source, ": calibration must be a JSON object");
  Calibration c;
  auto number = [&](const char* key) {
    if (!j.contains(key) || !j.at(key).is_number())
      fail(source, ": calibration field '", key, "' must be a number");
    const double v = j.at(key).get<double>();
    if (!std::isfinite(v)) fail(source, ": calibration field '", key, "' must be finite");
    return v;
  };
  if (!j.contains("feature") || !j.at("feature").is_string())
    fail(source, ": calibration field 'feature' must be \"eu_sum\", \"eu_mean\" or \"eu_max\"");
  const auto f = j.at("feature").get<std::string>();
  if (f == "eu_sum")
    c.feature = uncertainty::Aggregation::Sum;
  else if (f == "eu_mean")
    c.feature = uncertainty::Aggregation::Mean;
  else if (f == "eu_max")
    c.feature = uncertainty::Aggregation::Max;
  else
    fail(source, ": calibration feature '", f, "' is not eu_sum, eu_mean or eu_max");
  c.coef = number("coef");
  c.intercept = number("intercept");
  return c;
}

Calibration Calibration::load(const std::filesystem::path& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail(path.string(), ": not valid JSON: ", e.what());
  }
  return from_json(j, path.string());
}

}  // namespace drafteu::serve
