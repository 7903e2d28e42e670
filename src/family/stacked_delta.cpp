#include "family/stacked_delta.h"

#include <algorithm>

#include "model/kernels.h"
#include "util/error.h"

namespace drafteu {

// Up to this many rows per member (batch-1 decode), multiply-and-sum beats bmm: CPU bmm without
// MKL runs one GEMM call per member, and at one row their fixed cost dominates.
static constexpr int64_t kBroadcastRows = 4;

StackedDelta::StackedDelta(const std::vector<const LowRankTerm*>& terms, int64_t in_features,
                           int64_t out_features, const torch::TensorOptions& options)
    : members_(static_cast<int64_t>(terms.size())),
      active_(static_cast<int64_t>(terms.size())),
      redraw_(terms.size()),
      perturbs_(terms.size()) {
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
    perturbs_[static_cast<size_t>(k)] = true;
    const int64_t r = t->rank();
    if (t->b.size(0) != out_features || (!t->per_token() && t->a.size(1) != in_features))
      fail("StackedDelta: member ", k, " term shape does not match the module [", out_features,
           ", ", in_features, "]");
    b_t_[k].narrow(0, 0, r).copy_(t->b.detach().t() * t->scale);
    if (t->per_token())
      redraw_[static_cast<size_t>(k)] = t->redraw;
    else
      a_t_[k].narrow(1, 0, r).copy_(t->a.detach().t());
  }
  if (adds_raw()) a_ = a_t_.transpose(1, 2).contiguous();
}

bool StackedDelta::adds_raw() const {
  return !per_token_ && a_t_.scalar_type() == torch::kFloat32 && a_t_.device().is_cpu();
}

void StackedDelta::add_raw(const float* x, int64_t rows, float* y) const {
  const int64_t in = a_.size(2), rank = a_.size(1), out = b_t_.size(2), per = rows / active_;
  const float* a = a_.data_ptr<float>();
  const float* bt = b_t_.data_ptr<float>();
  for (int64_t i = 0; i < active_; ++i) {
    const int64_t k = first_ + i;
    if (!perturbs_[static_cast<size_t>(k)]) continue;
    kernels::low_rank_add(a + k * rank * in, bt + k * rank * out, rank, in, out, x + i * per * in,
                          per, y + i * per * out);
  }
}

void StackedDelta::set_positions(const torch::Tensor& positions) {
  if (!per_token_) return;
  const int64_t rank = b_t_.size(1), in = a_t_.size(1);
  token_a_ =
      torch::zeros({members_, positions.size(0), positions.size(1), rank, in}, a_t_.options());
  for (int64_t k = 0; k < members_; ++k) {
    const auto& rd = redraw_[static_cast<size_t>(k)];
    if (rd) token_a_[k].narrow(2, 0, rd->rank).copy_(rd->draw(positions, a_t_.options()));
  }
}

void StackedDelta::set_active(int64_t first, int64_t count) {
  if (first < 0 || count <= 0 || first + count > members_)
    fail("StackedDelta: members [", first, ", ", first + count, ") out of range (", members_, ")");
  first_ = first;
  active_ = count;
}

torch::Tensor StackedDelta::forward(const torch::Tensor& x) const {
  const int64_t n = x.size(0), t = x.size(1), in = x.size(2), k = active_;
  if (n % k != 0) fail("StackedDelta: batch ", n, " is not a multiple of ", k, " members");
  const int64_t b = n / k, rows = b * t;
  auto a_t = a_t_.narrow(0, first_, k), b_t = b_t_.narrow(0, first_, k);
  torch::Tensor z;  // [K, B·T, r]
  if (per_token_) {
    if (!token_a_.defined() || token_a_.size(1) != b || token_a_.size(2) != t)
      fail("StackedDelta: per-token terms need set_positions() for input ", x.sizes());
    z = torch::matmul(token_a_.narrow(0, first_, k), x.reshape({k, b, t, in, 1}))
            .view({k, rows, -1});
  } else if (rows <= kBroadcastRows) {
    z = (x.reshape({k, rows, in, 1}) * a_t.unsqueeze(1)).sum(2);
  } else {
    z = torch::bmm(x.reshape({k, rows, in}), a_t);
  }
  if (rows <= kBroadcastRows) return (z.unsqueeze(-1) * b_t.unsqueeze(1)).sum(2).view({n, t, -1});
  return torch::bmm(z, b_t).view({n, t, -1});
}

}  // namespace drafteu
