#include "uncertainty/draft_estimator.h"

#include "uncertainty/divergence.h"
#include "uncertainty/mixture.h"

namespace drafteu::uncertainty {

namespace detail {
DraftEstimate draft_rows(const ChunkDist& drafts, const ChunkDist& mixture,
                         const torch::Tensor& reference_logp) {
  DraftEstimate e;
  e.jsd = kl_rows(drafts, mixture.logp).mean(0);
  if (reference_logp.defined()) {
    e.bias = kl_rows(mixture, reference_logp);
    e.eu_hat = kl_rows(drafts, reference_logp).mean(0);
  }
  return e;
}

namespace {
void check_drafts_reference(const char* fn, const torch::Tensor& drafts,
                            const torch::Tensor& reference) {
  check_family(fn, "drafts", drafts);
  check_log_probs(fn, "reference", reference, 1);
  check_compatible(fn, "drafts", drafts, family_positions(drafts), "reference", reference,
                   dist_positions(reference));
}
}  // namespace
}  // namespace detail

torch::Tensor jsd(const torch::Tensor& draft_logp, const ReduceOptions& options) {
  detail::check_options("jsd", options);
  detail::check_family("jsd", "drafts", draft_logp);
  const auto positions = detail::family_positions(draft_logp);
  return detail::reduce_in_chunks(
      {draft_logp}, {true}, positions, options, [](const std::vector<torch::Tensor>& c) {
        const detail::ChunkDist drafts(c[0]);
        return std::vector<torch::Tensor>{
            detail::kl_rows(drafts, detail::log_mean_rows(drafts)).mean(0)};
      })[0];
}

torch::Tensor bias_term(const torch::Tensor& draft_logp, const torch::Tensor& reference_logp,
                        const ReduceOptions& options) {
  detail::check_options("bias_term", options);
  detail::check_drafts_reference("bias_term", draft_logp, reference_logp);
  const auto positions = detail::family_positions(draft_logp);
  return detail::reduce_in_chunks(
      {draft_logp, reference_logp}, {true, false}, positions, options,
      [](const std::vector<torch::Tensor>& c) {
        const detail::ChunkDist mixture(detail::log_mean_rows(detail::ChunkDist(c[0])));
        return std::vector<torch::Tensor>{detail::kl_rows(mixture, c[1])};
      })[0];
}

DraftEstimate draft_estimator(const torch::Tensor& draft_logp, const torch::Tensor& reference_logp,
                              const ReduceOptions& options) {
  detail::check_options("draft_estimator", options);
  detail::check_drafts_reference("draft_estimator", draft_logp, reference_logp);
  const auto positions = detail::family_positions(draft_logp);
  auto out =
      detail::reduce_in_chunks({draft_logp, reference_logp}, {true, false}, positions, options,
                               [](const std::vector<torch::Tensor>& c) {
                                 const detail::ChunkDist drafts(c[0]);
                                 const detail::ChunkDist mixture(detail::log_mean_rows(drafts));
                                 auto e = detail::draft_rows(drafts, mixture, c[1]);
                                 return std::vector<torch::Tensor>{e.jsd, e.bias, e.eu_hat};
                               });
  return {out[0], out[1], out[2]};
}

}  // namespace drafteu::uncertainty
