// The sampling warps a request asks for (torch-free: request parsers use it).
#pragma once
#include <cstdint>

namespace drafteu {

struct SamplingParams {
  double temperature = 1.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = off
  double top_p = 1.0;        // 1 = off
  bool greedy() const { return temperature <= 0.0; }
};

}  // namespace drafteu
