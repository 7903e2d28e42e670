// All K members' low-rank terms on one linear module, applied to a member-major batch
// x [K·B, T, in] (row k·B + b is member k) with two batched matmuls: (x_k A_kᵀ)(s_k B_k)ᵀ.
// The base weight stays shared: LinearImpl multiplies all K·B rows by it once.
#pragma once
#include <torch/torch.h>

#include <optional>
#include <vector>

#include "family/low_rank.h"
#include "model/linear.h"

namespace drafteu {

class StackedDelta : public LinearDelta {
 public:
  // terms[k]: member k's term, or null when member k leaves this module unperturbed. Ranks may
  // differ (padded with zeros). Terms must be all fixed or all per-token.
  StackedDelta(const std::vector<const LowRankTerm*>& terms, int64_t in_features,
               int64_t out_features, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x) const override;
  // Fixed float32 terms: x and y hold the active members' rows, member-major.
  bool adds_raw() const override;
  void add_raw(const float* x, int64_t rows, float* y) const override;

  bool per_token() const { return per_token_; }
  // Per-token terms: draws every member's A for the next call's positions [B, T].
  void set_positions(const torch::Tensor& positions);
  // Applies only members [first, first + count) to the following calls (a family forwarding its
  // members in chunks); inputs then hold count·B rows.
  void set_active(int64_t first, int64_t count);

 private:
  int64_t members_;
  int64_t first_ = 0, active_ = 0;
  bool per_token_ = false;
  torch::Tensor a_t_;  // [K, in, r], fixed terms
  torch::Tensor b_t_;  // [K, r, out], scale folded in
  torch::Tensor a_;    // [K, r, in]: a_t_ transposed, the raw path's row layout
  std::vector<std::optional<TokenRedraw>> redraw_;
  std::vector<bool> perturbs_;  // member k has a term here
  torch::Tensor token_a_;       // [K, B, T, r, in] for the current call
};

}  // namespace drafteu
