#include "model/autocast.h"

#include <ATen/autocast_mode.h>

#include <fstream>

#include "util/error.h"

namespace drafteu {

bool cpu_has_bf16_instructions() {
  static const bool has = [] {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);)
      if (line.rfind("flags", 0) == 0)
        return line.find(" avx512_bf16") != std::string::npos ||
               line.find(" amx_bf16") != std::string::npos;
    return false;
  }();
  return has;
}

ComputeDtype parse_compute_dtype(const std::string& name, const std::string& what) {
  if (name == "f32") return ComputeDtype::F32;
  if (name == "bf16") return ComputeDtype::BF16;
  if (name == "auto") return cpu_has_bf16_instructions() ? ComputeDtype::BF16 : ComputeDtype::F32;
  fail(what, ": unknown dtype '", name, "' (known: f32, bf16, auto)");
}

std::string to_string(ComputeDtype d) {
  return d == ComputeDtype::BF16 ? "bf16" : "f32";
}

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
