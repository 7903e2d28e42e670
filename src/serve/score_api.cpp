#include "serve/score_api.h"

#include <cmath>

#include "util/error.h"

namespace drafteu::serve {

using json = nlohmann::json;

namespace {

json finite_or_null(const std::optional<double>& v) {
  return v && std::isfinite(*v) ? json(*v) : json();
}

}  // namespace

json score_entry(int64_t index, const std::vector<ScoredToken>& tokens,
                 const UncertaintyPolicy& policy, const std::optional<Calibration>& calibration,
                 SequenceSummary* summary) {
  json list = json::array();
  std::vector<double> eu;
  std::vector<bool> flags;
  for (const auto& t : tokens) {
    const double e = t.eu_hat.value_or(0.0);
    const bool flagged = policy.flags(e);
    eu.push_back(e);
    flags.push_back(flagged);
    list.push_back({{"token", t.text},
                    {"id", t.id},
                    {"logprob", finite_or_null(t.logprob)},
                    {"eu_hat", finite_or_null(t.eu_hat)},
                    {"jsd", finite_or_null(t.jsd)},
                    {"bias", finite_or_null(t.bias)},
                    {"entropy", finite_or_null(t.entropy_target)},
                    {"flagged", flagged}});
  }
  *summary = summarize(eu, flags, calibration);
  return {{"index", index}, {"tokens", list}, {"summary", summary->to_json()}};
}

}  // namespace drafteu::serve
