// What to do with per-token EU while generating: flag tokens above a threshold (and merge
// consecutive flags into spans), stop ("abstain") once the running sequence EU passes a threshold,
// and summarise a finished sequence (optionally with a calibrated probability of error).
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/calibration.h"
#include "uncertainty/aggregate.h"

namespace drafteu::serve {

struct UncertaintyPolicy {
  std::optional<double> flag_threshold;  // eu_hat > threshold flags the token
  std::optional<double> stop_threshold;  // running aggregate > threshold stops generation
  uncertainty::Aggregation stop_aggregation = uncertainty::Aggregation::Sum;
  int64_t stop_min_tokens = 1;  // a mean over a handful of tokens is mostly noise

  bool flags(double eu_hat) const { return flag_threshold && eu_hat > *flag_threshold; }
  void validate() const;
};

// Running sum / mean / max of eu_hat over the tokens generated so far.
class SequenceMonitor {
 public:
  explicit SequenceMonitor(UncertaintyPolicy policy) : policy_(policy) {}
  void add(double eu_hat);
  bool should_stop() const;  // the policy's stop rule
  double sum() const { return sum_; }
  double mean() const { return count_ ? sum_ / static_cast<double>(count_) : 0.0; }
  double max() const { return max_; }
  int64_t count() const { return count_; }

 private:
  UncertaintyPolicy policy_;
  double sum_ = 0, max_ = 0;
  int64_t count_ = 0;
};

struct FlaggedSpan {
  int64_t begin = 0, end = 0;  // token indices [begin, end) into the generated tokens
  double eu_max = 0;
};

struct SequenceSummary {
  int64_t tokens = 0;
  double eu_sum = 0, eu_mean = 0, eu_max = 0;
  std::vector<FlaggedSpan> flagged;
  std::optional<double> p_error;  // with a calibration
  nlohmann::json to_json() const;
};

// eu_hat and the flag of each generated token, in order.
SequenceSummary summarize(const std::vector<double>& eu_hat, const std::vector<bool>& flagged,
                          const std::optional<Calibration>& calibration);

}  // namespace drafteu::serve
