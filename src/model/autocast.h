// Mixed precision: inside an Autocast scope libtorch runs matmuls and linear layers in bfloat16
// while weights, gradients and optimizer state stay float32 (PyTorch's CPU autocast). On CPUs
// with AVX512-BF16 the oneDNN bf16 GEMM is ~2.5x faster than OpenBLAS's f32 one (bench_distill).
#pragma once
#include "model/compute_dtype.h"

namespace drafteu {

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
