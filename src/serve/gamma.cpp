#include "serve/gamma.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace drafteu::serve {

void GammaSchedule::validate() const {
  if (!(cost_ratio >= 0)) fail("gamma: the cost ratio must be >= 0, got ", cost_ratio);
  if (min < 1 || max < min || initial < min || initial > max)
    fail("gamma: need 1 <= min <= initial <= max, got min ", min, ", initial ", initial, ", max ",
         max);
}

std::string GammaSchedule::name() const {
  return !adaptive ? "fixed" : cost_aware ? "cost-aware" : "heuristic";
}

void GammaSchedule::set_rule(const std::string& rule) {
  if (rule != "fixed" && rule != "heuristic" && rule != "cost-aware")
    fail("gamma schedule must be fixed, heuristic or cost-aware, got '", rule, "'");
  adaptive = rule != "fixed";
  cost_aware = rule == "cost-aware";
}

int64_t optimal_gamma(double alpha, double cost_ratio, int64_t min, int64_t max) {
  alpha = std::clamp(alpha, 0.0, 1.0);
  cost_ratio = std::max(cost_ratio, 0.0);
  int64_t best = min;
  double best_rate = -1;
  for (int64_t g = min; g <= max; ++g) {
    const double tokens = alpha >= 1.0
                              ? static_cast<double>(g + 1)
                              : (1.0 - std::pow(alpha, static_cast<double>(g + 1))) / (1.0 - alpha);
    const double rate = tokens / (1.0 + static_cast<double>(g) * cost_ratio);
    if (rate > best_rate * (1 + 1e-12)) best_rate = rate, best = g;
  }
  return best;
}

GammaController::GammaController(GammaSchedule schedule, double cost_ratio)
    : schedule_(schedule),
      cost_ratio_(schedule.cost_ratio > 0 ? schedule.cost_ratio : cost_ratio),
      gamma_(schedule.initial) {}

double GammaController::acceptance() const {
  return (accepted_ + 1.0) / (accepted_ + rejected_ + 2.0);
}

void GammaController::update(int64_t proposed, int64_t accepted) {
  if (!schedule_.adaptive) return;
  const bool all = accepted == proposed;
  if (!schedule_.cost_aware) {
    gamma_ = all ? std::min(gamma_ + 1, schedule_.max) : std::max(gamma_ - 1, schedule_.min);
    return;
  }
  // A round is `accepted` successes and, unless all were accepted, one failure.
  accepted_ += static_cast<double>(accepted);
  rejected_ += all ? 0.0 : 1.0;
  gamma_ = optimal_gamma(acceptance(), cost_ratio_, schedule_.min, schedule_.max);
}

}  // namespace drafteu::serve
