#include "uncertainty/divergence.h"

namespace drafteu::uncertainty {

namespace detail {
torch::Tensor kl_rows(const ChunkDist& p, const torch::Tensor& logq) {
  // p (log p - log q); where p is exactly 0 the term is 0 even if log q = -inf (0 * inf = NaN
  // otherwise). Where p > 0 and q = 0 the term is +inf, as the divergence is.
  auto terms = p.logp - logq;
  terms.mul_(p.prob).masked_fill_(p.zero, 0);
  return terms.sum(-1).clamp_min_(0);
}
}  // namespace detail

torch::Tensor kl_divergence(const torch::Tensor& logp, const torch::Tensor& logq,
                            const ReduceOptions& options) {
  detail::check_options("kl_divergence", options);
  detail::check_log_probs("kl_divergence", "p", logp, 1);
  detail::check_log_probs("kl_divergence", "q", logq, 1);
  const auto positions = detail::dist_positions(logp);
  detail::check_compatible("kl_divergence", "p", logp, positions, "q", logq,
                           detail::dist_positions(logq));
  return detail::reduce_in_chunks(
      {logp, logq}, {false, false}, positions, options, [](const std::vector<torch::Tensor>& c) {
        return std::vector<torch::Tensor>{detail::kl_rows(detail::ChunkDist(c[0]), c[1])};
      })[0];
}

torch::Tensor mean_kl_divergence(const torch::Tensor& family_logp,
                                 const torch::Tensor& reference_logp,
                                 const ReduceOptions& options) {
  detail::check_options("mean_kl_divergence", options);
  detail::check_family("mean_kl_divergence", "members", family_logp);
  detail::check_log_probs("mean_kl_divergence", "reference", reference_logp, 1);
  const auto positions = detail::family_positions(family_logp);
  detail::check_compatible("mean_kl_divergence", "members", family_logp, positions, "reference",
                           reference_logp, detail::dist_positions(reference_logp));
  return detail::reduce_in_chunks(
      {family_logp, reference_logp}, {true, false}, positions, options,
      [](const std::vector<torch::Tensor>& c) {
        return std::vector<torch::Tensor>{detail::kl_rows(detail::ChunkDist(c[0]), c[1]).mean(0)};
      })[0];
}

}  // namespace drafteu::uncertainty
