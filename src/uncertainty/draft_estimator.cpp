#include "uncertainty/draft_estimator.h"

#include "uncertainty/divergence.h"
#include "uncertainty/entropy.h"
#include "uncertainty/mixture.h"
#include "util/error.h"

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

TokenRecords token_records(const torch::Tensor& draft_logp, const torch::Tensor& reference_logp,
                           const torch::Tensor& target_logp) {
  detail::check_drafts_reference("token_records", draft_logp, reference_logp);
  detail::check_log_probs("token_records", "target", target_logp, 1);
  if (draft_logp.dim() != 3 || target_logp.sizes() != reference_logp.sizes())
    fail("token_records: need drafts [K, n, V] and reference, target [n, V], got ",
         detail::shape_str(draft_logp.sizes()), ", ", detail::shape_str(reference_logp.sizes()),
         ", ", detail::shape_str(target_logp.sizes()));
  const auto f64 = torch::kFloat64;
  auto q = draft_logp.exp();
  auto mix = q.mean(0);
  auto a = (q * draft_logp).sum(-1, false, f64).mean(0);
  auto b = (mix * mix.log()).sum(-1, false, f64);
  auto c = (mix * reference_logp).sum(-1, false, f64);
  auto p = target_logp.exp();
  TokenRecords r{(a - b).clamp_min_(0), (b - c).clamp_min_(0), (a - c).clamp_min_(0),
                 -(p * target_logp).sum(-1, false, f64)};
  // 0 * log 0 gave NaN somewhere: those positions take the exact reductions.
  auto nan = r.jsd.isnan() | r.bias.isnan() | r.eu_hat.isnan() | r.entropy.isnan();
  if (nan.any().item<bool>()) {
    auto exact = draft_estimator(draft_logp, reference_logp);
    auto h = entropy(target_logp);
    r.jsd = torch::where(nan, exact.jsd, r.jsd);
    r.bias = torch::where(nan, exact.bias, r.bias);
    r.eu_hat = torch::where(nan, exact.eu_hat, r.eu_hat);
    r.entropy = torch::where(nan, h.to(f64), r.entropy);
  }
  return {r.jsd.cpu(), r.bias.cpu(), r.eu_hat.cpu(), r.entropy.cpu()};
}

}  // namespace drafteu::uncertainty
