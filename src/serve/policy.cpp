#include "serve/policy.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace drafteu::serve {

void UncertaintyPolicy::validate() const {
  if (flag_threshold && !(*flag_threshold >= 0)) fail("EU flag threshold must be >= 0");
  if (stop_threshold && !(*stop_threshold >= 0)) fail("EU stop threshold must be >= 0");
  if (stop_min_tokens < 1) fail("EU stop: minimum token count must be >= 1");
}

void SequenceMonitor::add(double eu_hat) {
  sum_ += eu_hat;
  max_ = std::max(max_, eu_hat);
  ++count_;
}

bool SequenceMonitor::should_stop() const {
  if (!policy_.stop_threshold || count_ < policy_.stop_min_tokens) return false;
  const double v = policy_.stop_aggregation == uncertainty::Aggregation::Sum    ? sum()
                   : policy_.stop_aggregation == uncertainty::Aggregation::Mean ? mean()
                                                                                : max();
  return v > *policy_.stop_threshold;
}

nlohmann::json SequenceSummary::to_json() const {
  auto spans = nlohmann::json::array();
  for (const auto& s : flagged)
    spans.push_back({{"start", s.begin}, {"end", s.end}, {"eu_max", s.eu_max}});
  // JSON has no infinity: a draft outside the reference's support gives eu = inf -> null.
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  nlohmann::json j = {{"tokens", tokens},
                      {"eu_sum", num(eu_sum)},
                      {"eu_mean", num(eu_mean)},
                      {"eu_max", num(eu_max)},
                      {"flagged_spans", spans}};
  j["p_error"] = p_error ? num(*p_error) : nlohmann::json();
  return j;
}

SequenceSummary summarize(const std::vector<double>& eu_hat, const std::vector<bool>& flagged,
                          const std::optional<Calibration>& calibration) {
  SequenceSummary s;
  s.tokens = static_cast<int64_t>(eu_hat.size());
  for (size_t i = 0; i < eu_hat.size(); ++i) {
    s.eu_sum += eu_hat[i];
    s.eu_max = std::max(s.eu_max, eu_hat[i]);
    if (i < flagged.size() && flagged[i]) {
      const auto idx = static_cast<int64_t>(i);
      if (s.flagged.empty() || s.flagged.back().end != idx) s.flagged.push_back({idx, idx, 0.0});
      s.flagged.back().end = idx + 1;
      s.flagged.back().eu_max = std::max(s.flagged.back().eu_max, eu_hat[i]);
    }
  }
  s.eu_mean = s.tokens ? s.eu_sum / static_cast<double>(s.tokens) : 0.0;
  if (calibration) s.p_error = calibration->p_error(s.eu_sum, s.eu_mean, s.eu_max);
  return s;
}

}  // namespace drafteu::serve
