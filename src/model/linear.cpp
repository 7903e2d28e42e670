#include "model/linear.h"

#include <algorithm>

namespace drafteu {

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y;
  // One row (batch-1 decode): a matrix-vector kernel streams W far faster than GEMM does.
  if (x.numel() == weight.size(1) && !(torch::GradMode::is_enabled() && weight.requires_grad())) {
    auto shape = x.sizes().vec();
    shape.back() = weight.size(0);
    y = torch::mv(weight, x.reshape({-1})).view(shape);
  } else {
    y = torch::matmul(x, weight.t());
  }
  for (const auto& d : deltas_) y = y + d->forward(x);
  return y;
}

void LinearImpl::remove_delta(const LinearDelta* delta) {
  deltas_.erase(std::remove_if(deltas_.begin(), deltas_.end(),
                               [&](const auto& d) { return d.get() == delta; }),
                deltas_.end());
}

}  // namespace drafteu
