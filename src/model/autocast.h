// Mixed precision: inside an Autocast scope libtorch runs matmuls and linear layers in bfloat16
// while weights, gradients and optimizer state stay float32 (PyTorch's CPU autocast). On CPUs
// with AVX512-BF16 the oneDNN bf16 GEMM is ~2.5x faster than OpenBLAS's f32 one (bench_distill).
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

class Autocast {
 public:
  explicit Autocast(ComputeDtype dtype);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool active_ = false, was_enabled_ = false;
  int was_dtype_ = 0;
};

}  // namespace drafteu
