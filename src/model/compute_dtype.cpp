#include "model/compute_dtype.h"

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

}  // namespace drafteu
