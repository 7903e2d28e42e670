// How close a computed value must be to an independent reference: one entry per dtype and
// operation (CTranslate2's habit), instead of literals scattered through the tests. A value x
// passes against reference r when |x - r| <= atol + rtol * |r|, so float32 comparisons scale
// with the magnitude and hold under any BLAS kernel set (AVX2, AVX-512) and summation order.
#pragma once
#include <cmath>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace drafteu::test {

enum class Dtype { kFloat64, kFloat32, kBFloat16 };

enum class Op {
  kElementwise,  // one rounding per element or a short reduction: RMSNorm, RoPE, SiLU, softmax
  kMatmul,       // dot products: linear layers, LoRA and low-rank noise deltas, the SwiGLU MLP
  kAttention,    // scores, mask, softmax and the weighted sum, with or without a KV cache
  kForward,      // a whole model's logits along two computation paths (batch, cache, python)
  kLogProbSum,   // KL, JSD, entropy, bias, log-probs: sums over a vocabulary of float32 log-probs
};

struct Tolerance {
  double atol = 0;
  double rtol = 0;
  double bound(double reference) const { return atol + rtol * std::abs(reference); }
};

// bfloat16 keeps 8 significant bits (unit roundoff 2^-9 = 2e-3, one ulp 1.6e-2 at 2..4); float32
// keeps 24 (6e-8), and float32 results that went through several BLAS calls differ by a few 1e-6
// relative per layer. atol covers cancellation: a result near 0 made of O(1) terms (RoPE's
// x·cos + rotate(x)·sin, whose angle pos·inv_freq is itself rounded; a dot product).
constexpr Tolerance tolerance(Dtype dtype, Op op) {
  switch (dtype) {
    case Dtype::kFloat64:
      return op == Op::kForward ? Tolerance{1e-9, 1e-9} : Tolerance{1e-12, 1e-10};
    case Dtype::kFloat32:
      switch (op) {
        case Op::kElementwise:
          return {1e-6, 1e-5};
        case Op::kMatmul:
          return {1e-5, 1e-5};
        case Op::kAttention:
          return {1e-5, 1e-5};
        case Op::kForward:
          return {1e-4, 1e-5};
        case Op::kLogProbSum:
          return {5e-5, 1e-5};
      }
      break;
    case Dtype::kBFloat16:
      switch (op) {
        case Op::kElementwise:
          return {1e-2, 1.6e-2};
        case Op::kMatmul:
          return {2e-2, 2e-2};
        case Op::kAttention:
          return {2e-2, 2e-2};
        case Op::kForward:
          return {1e-1, 5e-2};
        case Op::kLogProbSum:
          return {5e-2, 2e-2};
      }
      break;
  }
  return {};
}

// EXPECT_TRUE(is_close(x, reference, tol)) reports both values, the difference and the bound.
inline ::testing::AssertionResult is_close(double actual, double reference, Tolerance tol) {
  const double diff = std::abs(actual - reference), bound = tol.bound(reference);
  if (diff <= bound) return ::testing::AssertionSuccess();
  std::ostringstream os;
  os.precision(9);
  os << actual << " vs reference " << reference << ": |diff| " << diff << " > " << bound
     << " (atol " << tol.atol << ", rtol " << tol.rtol << ")";
  return ::testing::AssertionFailure() << os.str();
}

}  // namespace drafteu::test
