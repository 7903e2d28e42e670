// The mixture of a family: log( sum_k w_k p_k ), by default the equal-weight mean
// p_bar = (1/K) sum_k p_k (target family mean, or q_mix for drafts).
#pragma once
#include "uncertainty/reduce.h"

namespace drafteu::uncertainty {

// family [K, ..., V] -> log mixture [..., V], computed per chunk in the accumulation dtype and
// returned in the family's dtype. Equal weights: log((1/K) sum_k p_k), i.e. logsumexp_k(logp_k)
// - log K (see detail::log_mean_rows); with `weights` [K]: logsumexp_k(logp_k + log w_k). The
// weights must be finite and non-negative with a positive sum; they are normalised to sum to 1.
// A vocabulary entry that is 0 under every member with positive weight stays exactly 0 (-inf).
torch::Tensor log_mixture(const torch::Tensor& family_logp, const torch::Tensor& weights = {},
                          const ReduceOptions& options = {});

namespace detail {
// Equal-weight log mixture over dim 0 of a chunk [K, ...] in the accumulation dtype:
// log(mean_k p_k) from the members' probabilities, falling back to logsumexp_k(logp_k) - log K
// where every p_k underflows to 0 but some logp_k is finite (so exact zeros stay -inf and
// underflowed tails keep their finite log).
torch::Tensor log_mean_rows(const ChunkDist& members);
}  // namespace detail

}  // namespace drafteu::uncertainty
