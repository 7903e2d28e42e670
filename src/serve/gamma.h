// How many tokens the drafts propose per round (γ).
//   fixed       γ = initial
//   heuristic   +1 after a fully accepted round, -1 after a rejection (the default)
//   cost-aware  the γ that maximises expected tokens per unit of time (Leviathan et al. 2023,
//               Thm 3.8): E[tokens] = (1 - α^(γ+1)) / (1 - α) per round of cost 1 + γ·c, with
//               α the sequence's acceptance so far and c the cost of one draft step relative to
//               one verification. c is not timed (that would make seeded outputs depend on the
//               machine's load): it is given, or the ratio of the weights each step reads, the
//               cost model of memory-bound decoding.
#pragma once
#include <cstdint>
#include <string>

namespace drafteu::serve {

struct GammaSchedule {
  int64_t initial = 4, min = 1, max = 8;
  bool adaptive = true;     // false: fixed
  bool cost_aware = false;  // with adaptive: cost-aware instead of heuristic
  double cost_ratio = 0;    // c for cost-aware; 0 = drafts' weights / target's weights
  void validate() const;
  std::string name() const;  // "fixed" | "heuristic" | "cost-aware"
  // "fixed" | "heuristic" | "cost-aware" -> sets adaptive and cost_aware.
  void set_rule(const std::string& rule);
};

// argmax over γ in [min, max] of (1 - α^(γ+1)) / ((1 - α)(1 + γ c)); α in [0, 1], c >= 0.
int64_t optimal_gamma(double alpha, double cost_ratio, int64_t min, int64_t max);

// One sequence's γ: call update() after each round with what it proposed and accepted.
class GammaController {
 public:
  // cost_ratio: c when the schedule's is 0.
  GammaController(GammaSchedule schedule, double cost_ratio);
  int64_t gamma() const { return gamma_; }
  void update(int64_t proposed, int64_t accepted);
  double acceptance() const;  // posterior mean of α under a uniform prior

 private:
  GammaSchedule schedule_;
  double cost_ratio_;
  int64_t gamma_;
  double accepted_ = 0, rejected_ = 0;  // per-proposal outcomes seen so far
};

}  // namespace drafteu::serve
