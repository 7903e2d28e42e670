// Sequence-level aggregation of per-token quantities over the generated tokens.
#pragma once
#include <string_view>

#include "uncertainty/reduce.h"

namespace drafteu::uncertainty {

enum class Aggregation { Sum, Mean, Max };

// "sum" | "mean" | "max" (drafteu::Error otherwise), and back.
Aggregation parse_aggregation(std::string_view name);
const char* to_string(Aggregation aggregation);

// per_token [B, T] (or [T]) -> [B] (or a scalar), over the positions where `mask` is nonzero
// (bool or numeric, same shape; undefined = every position). Masked positions are ignored
// entirely, even when they hold NaN or inf (padding garbage). A sequence with no unmasked
// position aggregates to 0 for every mode (the quantities here are >= 0 and an empty sequence
// carries no uncertainty). Keeps the dtype and device of per_token.
torch::Tensor aggregate_sequence(const torch::Tensor& per_token, const torch::Tensor& mask,
                                 Aggregation aggregation);

}  // namespace drafteu::uncertainty
