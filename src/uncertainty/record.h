// Token-level record used by scoring and serving: every per-position quantity of the paper from
// whichever inputs are available, computed in one pass over chunks of positions.
#pragma once
#include "uncertainty/reduce.h"

namespace drafteu::uncertainty {

// All optional (undefined = absent), at least one given; shared position shape [...] and V.
struct RecordInputs {
  torch::Tensor target = {};     // [M, ..., V] target family members p_m
  torch::Tensor drafts = {};     // [K, ..., V] drafts q_k
  torch::Tensor reference = {};  // [..., V] p_ref; defaults to the target family mean p_bar
};

// Per-position tensors [...]; a quantity whose inputs are absent is undefined.
struct TokenRecord {
  torch::Tensor eu_true;         // mean_m KL(p_m || p_bar)                  needs target
  torch::Tensor jsd;             // mean_k KL(q_k || q_mix)                  needs drafts
  torch::Tensor bias;            // KL(q_mix || p_ref)                       needs drafts, p_ref
  torch::Tensor eu_hat;          // mean_k KL(q_k || p_ref)                  needs drafts, p_ref
  torch::Tensor entropy_target;  // H(p_ref) (the reference, else p_bar)     needs p_ref
  torch::Tensor entropy_mix;     // H(q_mix)                                 needs drafts
};

// p_ref is `reference` when given, otherwise the target family mean p_bar when `target` is given.
TokenRecord token_record(const RecordInputs& inputs, const ReduceOptions& options = {});

}  // namespace drafteu::uncertainty
