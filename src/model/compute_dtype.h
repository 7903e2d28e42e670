// The compute dtype of training forwards (model/autocast.h applies it), torch-free so config
// readers name and parse it without torch.
#pragma once
#include <string>

namespace drafteu {

enum class ComputeDtype { F32, BF16 };

// "f32" | "bf16" | "auto" (bf16 where the CPU has bf16 instructions, else f32); errors name
// `what` (a flag or config field).
ComputeDtype parse_compute_dtype(const std::string& name, const std::string& what);
// The CPU has AVX512-BF16 or AMX-BF16 (/proc/cpuinfo): without them bf16 GEMMs are emulated
// and slower than f32.
bool cpu_has_bf16_instructions();
std::string to_string(ComputeDtype d);

}  // namespace drafteu
