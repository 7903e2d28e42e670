#include "distill/schedule.h"

#include <algorithm>
#include <cmath>

namespace drafteu::distill {

int64_t ScheduleConfig::warmup(int64_t total) const {
  if (warmup_steps > 0) return warmup_steps;
  return static_cast<int64_t>(std::ceil(warmup_ratio * static_cast<double>(total)));
}

double lr_multiplier(const ScheduleConfig& s, int64_t step, int64_t total) {
  const int64_t warm = s.warmup(total);
  if (s.kind == "cosine_floor") {
    if (step < warm) return static_cast<double>(step + 1) / static_cast<double>(warm);
    const double progress = static_cast<double>(step) / static_cast<double>(total);
    return s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * progress));
  }
  if (step < warm)
    return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warm));
  if (s.kind == "constant") return 1.0;
  const double progress =
      static_cast<double>(step - warm) / static_cast<double>(std::max<int64_t>(1, total - warm));
  if (s.kind == "cosine") return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  return std::max(0.0, 1.0 - progress);
}

}  // namespace drafteu::distill
