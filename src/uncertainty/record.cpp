#include "uncertainty/record.h"

#include "uncertainty/draft_estimator.h"
#include "uncertainty/entropy.h"
#include "uncertainty/epistemic.h"
#include "uncertainty/mixture.h"
#include "util/error.h"

namespace drafteu::uncertainty {

TokenRecord token_record(const RecordInputs& inputs, const ReduceOptions& options) {
  constexpr const char* fn = "token_record";
  detail::check_options(fn, options);
  const bool has_target = inputs.target.defined();
  const bool has_drafts = inputs.drafts.defined();
  const bool has_reference = inputs.reference.defined();
  if (!has_target && !has_drafts && !has_reference) {
    fail(fn, ": no inputs (give target, drafts and/or reference)");
  }

  // Validate each input and that all agree with the first one given.
  const char* first_name = nullptr;
  const torch::Tensor* first = nullptr;
  std::vector<int64_t> positions;
  auto add = [&](const char* name, const torch::Tensor& t, bool family) {
    if (!t.defined()) return;
    if (family) {
      detail::check_family(fn, name, t);
    } else {
      detail::check_log_probs(fn, name, t, 1);
    }
    auto pos = family ? detail::family_positions(t) : detail::dist_positions(t);
    if (first) {
      detail::check_compatible(fn, first_name, *first, positions, name, t, pos);
    } else {
      first_name = name;
      first = &t;
      positions = std::move(pos);
    }
  };
  add("target members", inputs.target, true);
  add("drafts", inputs.drafts, true);
  add("reference", inputs.reference, false);

  auto out = detail::reduce_in_chunks(
      {inputs.target, inputs.drafts, inputs.reference}, {true, true, false}, positions, options,
      [&](const std::vector<torch::Tensor>& c) {
        std::vector<torch::Tensor> r(6);  // the TokenRecord fields in order
        torch::Tensor reference = c[2];
        if (has_target) {
          const detail::ChunkDist members(c[0]);
          const auto log_mean = detail::log_mean_rows(members);
          r[0] = detail::epistemic_rows(members, log_mean);
          if (!reference.defined()) reference = log_mean;
        }
        if (has_drafts) {
          const detail::ChunkDist drafts(c[1]);
          const detail::ChunkDist mixture(detail::log_mean_rows(drafts));
          auto e = detail::draft_rows(drafts, mixture, reference);
          r[1] = e.jsd;
          r[2] = e.bias;
          r[3] = e.eu_hat;
          r[5] = detail::entropy_rows(mixture);
        }
        if (reference.defined()) r[4] = detail::entropy_rows(detail::ChunkDist(reference));
        return r;
      });
  return {out[0], out[1], out[2], out[3], out[4], out[5]};
}

}  // namespace drafteu::uncertainty
