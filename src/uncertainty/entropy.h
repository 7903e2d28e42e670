// Shannon entropy H(p) = -sum_v p(v) log p(v) (nats) over the vocabulary.
#pragma once
#include "uncertainty/reduce.h"

namespace drafteu::uncertainty {

// logp [..., V] -> H [...]. Zero probabilities contribute 0 (0 log 0 = 0).
torch::Tensor entropy(const torch::Tensor& logp, const ReduceOptions& options = {});

// Mean member entropy mean_k H(p_k): family [K, ..., V] -> [...]. For a target family this is
// the aleatoric part of Lemma 3.1.
torch::Tensor mean_entropy(const torch::Tensor& family_logp, const ReduceOptions& options = {});

namespace detail {
// H over the last dimension of a chunk already in the accumulation dtype.
torch::Tensor entropy_rows(const ChunkDist& p);
}  // namespace detail

}  // namespace drafteu::uncertainty
