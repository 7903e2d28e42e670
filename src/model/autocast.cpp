#include "model/autocast.h"

#include <ATen/autocast_mode.h>

#include "util/error.h"

namespace drafteu {

Autocast::Autocast(ComputeDtype dtype) {
  if (dtype == ComputeDtype::F32) return;
  active_ = true;
  was_enabled_ = at::autocast::is_cpu_enabled();
  was_dtype_ = static_cast<int>(at::autocast::get_autocast_cpu_dtype());
  at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  at::autocast::set_cpu_enabled(true);
  at::autocast::increment_nesting();
}

Autocast::~Autocast() {
  if (!active_) return;
  // Leaving the outermost scope drops the bf16 weight copies autocast cached.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_cpu_enabled(was_enabled_);
  at::autocast::set_autocast_cpu_dtype(static_cast<at::ScalarType>(was_dtype_));
}

}  // namespace drafteu
