#include "uncertainty/aggregate.h"

#include <limits>
#include <string>

#include "util/error.h"

namespace drafteu::uncertainty {

Aggregation parse_aggregation(std::string_view name) {
  if (name == "sum") return Aggregation::Sum;
  if (name == "mean") return Aggregation::Mean;
  if (name == "max") return Aggregation::Max;
  fail("aggregation: unknown mode '", std::string(name), "' (expected sum, mean or max)");
}

const char* to_string(Aggregation aggregation) {
  switch (aggregation) {
    case Aggregation::Sum:
      return "sum";
    case Aggregation::Mean:
      return "mean";
    case Aggregation::Max:
      return "max";
  }
  return "?";
}

torch::Tensor aggregate_sequence(const torch::Tensor& per_token, const torch::Tensor& mask,
                                 Aggregation aggregation) {
  if (!per_token.defined()) fail("aggregate_sequence: per_token is not given (undefined tensor)");
  if (!torch::isFloatingType(per_token.scalar_type())) {
    fail("aggregate_sequence: per_token must be floating-point, got dtype ",
         c10::toString(per_token.scalar_type()));
  }
  if (per_token.dim() != 1 && per_token.dim() != 2) {
    fail("aggregate_sequence: per_token must be [B, T] or [T], got shape ",
         detail::shape_str(per_token.sizes()));
  }
  torch::Tensor keep;
  if (mask.defined()) {
    if (mask.sizes() != per_token.sizes()) {
      fail("aggregate_sequence: mask has shape ", detail::shape_str(mask.sizes()),
           " but per_token has ", detail::shape_str(per_token.sizes()));
    }
    if (mask.device() != per_token.device()) {
      fail("aggregate_sequence: mask is on ", mask.device(), " but per_token is on ",
           per_token.device());
    }
    keep = mask.scalar_type() == torch::kBool ? mask : mask.ne(0);
  } else {
    keep = torch::ones_like(per_token, per_token.options().dtype(torch::kBool));
  }
  if (per_token.size(-1) == 0) {  // no tokens at all: every sequence is empty
    return torch::zeros(per_token.sizes().slice(0, per_token.dim() - 1), per_token.options());
  }
  const auto drop = keep.logical_not();
  const auto count = keep.sum(-1);  // int64
  const auto empty = count.eq(0);
  switch (aggregation) {
    case Aggregation::Sum:
      return per_token.masked_fill(drop, 0).sum(-1);
    case Aggregation::Mean:
      return per_token.masked_fill(drop, 0).sum(-1) /
             count.clamp_min(1).to(per_token.scalar_type());
    case Aggregation::Max:
      return per_token.masked_fill(drop, -std::numeric_limits<double>::infinity())
          .amax(-1)
          .masked_fill(empty, 0);
  }
  fail("aggregate_sequence: unknown aggregation");
}

}  // namespace drafteu::uncertainty
