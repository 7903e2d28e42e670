// Lemma 3.1: for a target family p_1..p_M (posterior samples) with mean p_bar = (1/M) sum_m p_m,
//   total      = H(p_bar)
//   aleatoric  = (1/M) sum_m H(p_m)
//   epistemic  = EU = H(p_bar) - (1/M) sum_m H(p_m) = (1/M) sum_m KL(p_m || p_bar)
// (the mutual information between the token and the member). 0 <= EU <= log M.
#pragma once
#include "uncertainty/reduce.h"

namespace drafteu::uncertainty {

struct UncertaintySplit {
  torch::Tensor total;      // H(p_bar) [...]
  torch::Tensor aleatoric;  // mean_m H(p_m) [...]
  torch::Tensor epistemic;  // mean_m KL(p_m || p_bar) [...]
};

// EU = mean_m KL(p_m || p_bar): family [M, ..., V] -> [...]. Computed in the KL form, which has
// no cancellation between two large entropies; a one-member family gives exactly 0.
torch::Tensor epistemic_uncertainty(const torch::Tensor& family_logp,
                                    const ReduceOptions& options = {});

// All three terms of Lemma 3.1 in one pass. Each term is computed on its own (epistemic in the
// KL form), so total - aleatoric = epistemic holds up to rounding rather than by construction.
UncertaintySplit uncertainty_split(const torch::Tensor& family_logp,
                                   const ReduceOptions& options = {});

namespace detail {
// mean_m KL(p_m || p_bar) for a chunk p [M, n, V] and its log mean [n, V].
torch::Tensor epistemic_rows(const ChunkDist& members, const torch::Tensor& log_mean);
}  // namespace detail

}  // namespace drafteu::uncertainty
