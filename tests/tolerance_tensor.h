// Element-wise comparison of tensors against the tolerance table (tests/tolerance.h).
#pragma once
#include <torch/torch.h>

#include "tolerance.h"

namespace drafteu::test {

inline Dtype dtype_of(const torch::Tensor& t) {
  if (t.scalar_type() == torch::kFloat64) return Dtype::kFloat64;
  if (t.scalar_type() == torch::kBFloat16) return Dtype::kBFloat16;
  return Dtype::kFloat32;
}

// Every element within atol + rtol * |reference|; on failure, names the worst element.
inline ::testing::AssertionResult all_close(const torch::Tensor& actual,
                                            const torch::Tensor& reference, Tolerance tol) {
  if (actual.sizes() != reference.sizes())
    return ::testing::AssertionFailure()
           << "shape " << actual.sizes() << " vs reference " << reference.sizes();
  const auto a = actual.to(torch::kFloat64).flatten(), r = reference.to(torch::kFloat64).flatten();
  const auto excess = (a - r).abs() - (tol.atol + tol.rtol * r.abs());
  if (a.numel() == 0 || excess.max().item<double>() <= 0) return ::testing::AssertionSuccess();
  const int64_t i = excess.argmax().item<int64_t>();
  return ::testing::AssertionFailure()
         << "element " << i << ": "
         << is_close(a[i].item<double>(), r[i].item<double>(), tol).message();
}

}  // namespace drafteu::test
