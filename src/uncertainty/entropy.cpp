#include "uncertainty/entropy.h"

namespace drafteu::uncertainty {

namespace detail {
torch::Tensor entropy_rows(const ChunkDist& p) {
  // p log p, with 0 log 0 = 0 where p is exactly 0 (logp = -inf gives 0 * -inf = NaN otherwise).
  auto plogp = p.prob * p.logp;
  plogp.masked_fill_(p.zero, 0);
  return -plogp.sum(-1);
}
}  // namespace detail

torch::Tensor entropy(const torch::Tensor& logp, const ReduceOptions& options) {
  detail::check_options("entropy", options);
  detail::check_log_probs("entropy", "logp", logp, 1);
  const auto positions = detail::dist_positions(logp);
  return detail::reduce_in_chunks(
      {logp}, {false}, positions, options, [](const std::vector<torch::Tensor>& c) {
        return std::vector<torch::Tensor>{detail::entropy_rows(detail::ChunkDist(c[0]))};
      })[0];
}

torch::Tensor mean_entropy(const torch::Tensor& family_logp, const ReduceOptions& options) {
  detail::check_options("mean_entropy", options);
  detail::check_family("mean_entropy", "family", family_logp);
  const auto positions = detail::family_positions(family_logp);
  return detail::reduce_in_chunks(
      {family_logp}, {true}, positions, options, [](const std::vector<torch::Tensor>& c) {
        return std::vector<torch::Tensor>{detail::entropy_rows(detail::ChunkDist(c[0])).mean(0)};
      })[0];
}

}  // namespace drafteu::uncertainty
