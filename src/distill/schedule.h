// Learning-rate schedules with warmup, as transformers' get_{linear,cosine}_schedule_with_warmup:
// the multiplier for optimizer step `step` (0-based) of `total`. "cosine_floor" is the testbed's
// pretraining schedule (nanoGPT's): warmup from 1/warmup up to 1, then a cosine over the whole run
// from 1 down to min_lr_ratio.
#pragma once
#include <cstdint>
#include <string>

namespace drafteu::distill {

struct ScheduleConfig {
  std::string kind = "linear";  // "linear" | "cosine" | "constant" | "cosine_floor"
  int64_t warmup_steps = 0;     // wins over warmup_ratio when > 0
  double warmup_ratio = 0.0;    // fraction of the total steps
  double min_lr_ratio = 0.0;    // cosine_floor: the multiplier at the end

  int64_t warmup(int64_t total) const;
};

double lr_multiplier(const ScheduleConfig& s, int64_t step, int64_t total);

}  // namespace drafteu::distill
