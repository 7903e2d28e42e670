// Learning-rate schedules with warmup, as transformers' get_{linear,cosine}_schedule_with_warmup:
// the multiplier for optimizer step `step` (0-based) of `total`.
#pragma once
#include <cstdint>
#include <string>

namespace drafteu::distill {

struct ScheduleConfig {
  std::string kind = "linear";  // "linear" | "cosine" | "constant"
  int64_t warmup_steps = 0;     // wins over warmup_ratio when > 0
  double warmup_ratio = 0.0;    // fraction of the total steps

  int64_t warmup(int64_t total) const;
};

double lr_multiplier(const ScheduleConfig& s, int64_t step, int64_t total);

}  // namespace drafteu::distill
