#include "family/stacked_delta.h"

#include <algorithm>

#include "util/error.h"

namespace drafteu {

// Up to this many rows per member (batch-1 decode), multiply-and-sum beats bmm: CPU bmm without
// MKL runs one GEMM call per member, and at one row their fixed cost dominates.
static constexpr int64_t kBroadcastRows = 4;

StackedDelta::StackedDelta(const std::vector<const LowRankTerm*>& terms, int64_t in_features,
                           int64_t out_features, const torch::TensorOptions& options)
    : members_(static_cast<int64_t>(terms.size())), redraw_(terms.size()) {
  int64_t rank = 0;
  bool any_fixed = false;
  for (const auto* t : terms) {
    if (!t) continue;
    rank = std::max(rank, t->rank());
    (t->per_token() ? per_token_ : any_fixed) = true;
  }
  if (per_token_ && any_fixed)
    fail("StackedDelta: members mix per-token and fixed terms on one module");
  torch::NoGradGuard no_grad;
  a_t_ = torch::zeros({members_, in_features, rank}, options);
  b_t_ = torch::zeros({members_, rank, out_features}, options);
  for (int64_t k = 0; k < members_; ++k) {
    const auto* t = terms[static_cast<size_t>(k)];
    if (!t) continue;
    const int64_t r = t->rank();
    if (t->b.size(0) != out_features || (!t->per_token() && t->a.size(1) != in_features))
      fail("StackedDelta: member ", k, " term shape does not match the module [", out_features,
           ", ", in_features, "]");
    b_t_[k].narrow(0, 0, r).copy_(t->b.detach().t() * t->scale);
    if (t->per_token()) redraw_[static_cast<size_t>(k)] = t->redraw;
    else a_t_[k].narrow(1, 0, r).copy_(t->a.detach().t());
  }
}

void StackedDelta::set_positions(const torch::Tensor& positions) {
  if (!per_token_) return;
  const int64_t rank = b_t_.size(1), in = a_t_.size(1);
  token_a_ = torch::zeros({members_, positions.size(0), positions.size(1), rank, in}, a_t_.options());
  for (int64_t k = 0; k < members_; ++k) {
    const auto& rd = redraw_[static_cast<size_t>(k)];
    if (rd) token_a_[k].narrow(2, 0, rd->rank).copy_(rd->draw(positions, a_t_.options()));
  }
}

torch::Tensor StackedDelta::forward(const torch::Tensor& x) const {
  const int64_t n = x.size(0), t = x.size(1), in = x.size(2);
  if (n % members_ != 0) fail("StackedDelta: batch ", n, " is not a multiple of ", members_, " members");
  const int64_t b = n / members_;
  torch::Tensor z;  // [K, B·T, r]
  if (per_token_) {
    if (!token_a_.defined() || token_a_.size(1) != b || token_a_.size(2) != t)
      fail("StackedDelta: per-token terms need set_positions() for input ", x.sizes());
    z = torch::matmul(token_a_, x.reshape({members_, b, t, in, 1})).view({members_, b * t, -1});
  } else if (b * t <= kBroadcastRows) {
    z = (x.reshape({members_, b * t, in, 1}) * a_t_.unsqueeze(1)).sum(2);
  } else {
    z = torch::bmm(x.reshape({members_, b * t, in}), a_t_);
  }
  if (b * t <= kBroadcastRows) return (z.unsqueeze(-1) * b_t_.unsqueeze(1)).sum(2).view({n, t, -1});
  return torch::bmm(z, b_t_).view({n, t, -1});
}

}  // namespace drafteu
