// Kullback-Leibler divergence KL(p || q) = sum_v p(v) (log p(v) - log q(v)) (nats).
//
// Terms with p(v) = 0 are 0 whatever q(v) is (0 log 0/q = 0, also for q(v) = 0). A term with
// p(v) > 0 and q(v) = 0 is +inf, so KL(p || q) = +inf when q does not cover the support of p.
// Results are clamped at 0: KL >= 0 for normalised inputs and the clamp only removes rounding.
#pragma once
#include "uncertainty/reduce.h"

namespace drafteu::uncertainty {

// logp, logq [..., V] (same shape) -> KL(p || q) [...].
torch::Tensor kl_divergence(const torch::Tensor& logp, const torch::Tensor& logq,
                            const ReduceOptions& options = {});

// Mean divergence of a family from one reference: family [K, ..., V], reference [..., V] ->
// mean_k KL(p_k || r) [...]. For a target family this is the left side of Theorem 3.2; for
// drafts against p_ref it is the estimator EU_hat of Theorem 3.4.
torch::Tensor mean_kl_divergence(const torch::Tensor& family_logp,
                                 const torch::Tensor& reference_logp,
                                 const ReduceOptions& options = {});

namespace detail {
// KL(p || q) over the last dimension of chunks in the accumulation dtype; `logq` broadcasts
// against p (e.g. p [K, n, V], q [n, V] gives [K, n]).
torch::Tensor kl_rows(const ChunkDist& p, const torch::Tensor& logq);
}  // namespace detail

}  // namespace drafteu::uncertainty
