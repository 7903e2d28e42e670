#include "uncertainty/mixture.h"

#include <cmath>

#include "util/error.h"

namespace drafteu::uncertainty {

namespace detail {
torch::Tensor log_mean_rows(const ChunkDist& members) {
  if (members.logp.size(0) == 1) return members.logp[0];  // exact: EU of one member is 0
  // The probabilities are at hand, so log(mean p) costs one pass instead of logsumexp's max,
  // subtraction and second exp.
  auto mix = members.prob.mean(0).log_();
  const auto underflow =
      mix.isneginf().logical_and_(members.logp.amax(0).isneginf().logical_not_());
  if (underflow.any().item<bool>()) {
    // logsumexp masks infinite maxima, so a column that is -inf for every member stays -inf.
    const auto exact =
        torch::logsumexp(members.logp, {0}) - std::log(static_cast<double>(members.logp.size(0)));
    mix = torch::where(underflow, exact, mix);
  }
  return mix;
}
}  // namespace detail

torch::Tensor log_mixture(const torch::Tensor& family_logp, const torch::Tensor& weights,
                          const ReduceOptions& options) {
  detail::check_options("log_mixture", options);
  detail::check_family("log_mixture", "family", family_logp);
  const int64_t k = family_logp.size(0);
  torch::Tensor log_w;
  if (weights.defined()) {
    if (weights.dim() != 1 || weights.size(0) != k) {
      fail("log_mixture: weights must have shape [", k, "] (one per member), got ",
           detail::shape_str(weights.sizes()));
    }
    if (weights.device() != family_logp.device()) {
      fail("log_mixture: weights are on ", weights.device(), " but the family is on ",
           family_logp.device());
    }
    auto w = weights.to(options.accumulate);
    if (!torch::isfinite(w).all().item<bool>() || (w < 0).any().item<bool>()) {
      fail("log_mixture: weights must be finite and non-negative");
    }
    const double total = w.sum().item<double>();
    if (!(total > 0)) fail("log_mixture: weights sum to ", total, ", expected a positive sum");
    log_w = (w / total).log();  // log 0 = -inf drops a member
  }
  const auto positions = detail::family_positions(family_logp);
  const auto out_type = family_logp.scalar_type();
  return detail::reduce_in_chunks({family_logp}, {true}, positions, options,
                                  [&](const std::vector<torch::Tensor>& c) {
                                    torch::Tensor mix;
                                    if (log_w.defined()) {
                                      std::vector<int64_t> shape(c[0].dim(), 1);
                                      shape[0] = k;
                                      mix = torch::logsumexp(c[0] + log_w.view(shape), {0});
                                    } else {
                                      mix = detail::log_mean_rows(detail::ChunkDist(c[0]));
                                    }
                                    return std::vector<torch::Tensor>{mix.to(out_type)};
                                  })[0];
}

}  // namespace drafteu::uncertainty
