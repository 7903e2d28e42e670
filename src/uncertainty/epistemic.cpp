#include "uncertainty/epistemic.h"

#include "uncertainty/divergence.h"
#include "uncertainty/entropy.h"
#include "uncertainty/mixture.h"

namespace drafteu::uncertainty {

namespace detail {
torch::Tensor epistemic_rows(const ChunkDist& members, const torch::Tensor& log_mean) {
  return kl_rows(members, log_mean).mean(0);
}
}  // namespace detail

torch::Tensor epistemic_uncertainty(const torch::Tensor& family_logp,
                                    const ReduceOptions& options) {
  detail::check_options("epistemic_uncertainty", options);
  detail::check_family("epistemic_uncertainty", "family", family_logp);
  const auto positions = detail::family_positions(family_logp);
  return detail::reduce_in_chunks(
      {family_logp}, {true}, positions, options, [](const std::vector<torch::Tensor>& c) {
        const detail::ChunkDist members(c[0]);
        return std::vector<torch::Tensor>{
            detail::epistemic_rows(members, detail::log_mean_rows(members))};
      })[0];
}

UncertaintySplit uncertainty_split(const torch::Tensor& family_logp, const ReduceOptions& options) {
  detail::check_options("uncertainty_split", options);
  detail::check_family("uncertainty_split", "family", family_logp);
  const auto positions = detail::family_positions(family_logp);
  auto out = detail::reduce_in_chunks(
      {family_logp}, {true}, positions, options, [](const std::vector<torch::Tensor>& c) {
        const detail::ChunkDist members(c[0]);
        const detail::ChunkDist mean(detail::log_mean_rows(members));
        return std::vector<torch::Tensor>{detail::entropy_rows(mean),
                                          detail::entropy_rows(members).mean(0),
                                          detail::epistemic_rows(members, mean.logp)};
      });
  return {out[0], out[1], out[2]};
}

}  // namespace drafteu::uncertainty
