#include "family/grouped_family.h"

#include <cmath>
#include <map>

#include "util/error.h"

namespace drafteu {

GroupedFamily::GroupedFamily(std::shared_ptr<Family> inner,
                             std::vector<std::vector<int64_t>> groups)
    : inner_(std::move(inner)), groups_(std::move(groups)) {
  if (!inner_) fail("GroupedFamily: no family to group");
  if (groups_.empty()) fail("GroupedFamily: needs at least one group");
  std::vector<int> seen(static_cast<size_t>(inner_->size()), 0);
  for (size_t g = 0; g < groups_.size(); ++g) {
    if (groups_[g].empty()) fail("GroupedFamily: group ", g, " is empty");
    for (auto k : groups_[g]) {
      if (k < 0 || k >= inner_->size())
        fail("GroupedFamily: group ", g, " names member ", k, "; the family has ", inner_->size());
      if (seen[static_cast<size_t>(k)]++) fail("GroupedFamily: member ", k, " is in two groups");
    }
  }
}

std::vector<std::vector<int64_t>> GroupedFamily::by_member(int64_t splits, int64_t members) {
  if (splits < 1 || members < 1)
    fail("GroupedFamily: a ", splits, " x ", members, " pool has no drafts");
  std::vector<std::vector<int64_t>> groups(static_cast<size_t>(members));
  for (int64_t s = 0; s < splits; ++s)
    for (int64_t m = 0; m < members; ++m) groups[static_cast<size_t>(m)].push_back(s * members + m);
  return groups;
}

std::vector<std::vector<int64_t>> GroupedFamily::by_label(const std::vector<int64_t>& labels) {
  std::map<int64_t, std::vector<int64_t>> by;
  for (size_t k = 0; k < labels.size(); ++k) by[labels[k]].push_back(static_cast<int64_t>(k));
  std::vector<std::vector<int64_t>> groups;
  for (auto& [label, members] : by) groups.push_back(std::move(members));
  return groups;
}

torch::Tensor GroupedFamily::forward(const torch::Tensor& ids, FamilyCache* cache,
                                     const torch::Tensor& attention_mask, bool last_only) {
  // float64: float32's log-sum-exp loses a tail mass under ~6e-8, all a nearly certain
  // position's EU rests on. The mixtures' log-probabilities fit float32 again.
  const auto logp = torch::log_softmax(
      inner_->forward(ids, cache, attention_mask, last_only).to(torch::kFloat64), -1);
  std::vector<torch::Tensor> out;
  for (const auto& g : groups_) {
    const auto idx = torch::tensor(g, torch::kInt64).to(logp.device());
    // log((1/n) Σ_k p_k), in log space so that no probability underflows.
    out.push_back(torch::logsumexp(logp.index_select(0, idx), 0) -
                  std::log(static_cast<double>(g.size())));
  }
  return torch::stack(out).to(torch::kFloat32);
}

}  // namespace drafteu
