// A family whose members are mixtures of another family's members (§4.4): the 2×3 DDD pool's six
// drafts "ensembled in pairs to form three imitated groups", each group the mixture of the drafts
// distilled from one target member. Member g's distribution is the mean of its group's
// probabilities, returned as log-probabilities (valid logits).
#pragma once
#include <memory>
#include <vector>

#include "family/family.h"

namespace drafteu {

class GroupedFamily : public Family {
 public:
  // groups[g]: indices of `inner`'s members mixed into member g (each index in exactly one group).
  GroupedFamily(std::shared_ptr<Family> inner, std::vector<std::vector<int64_t>> groups);
  // Groups of the S×M pool's drafts by target member: group m = {m, M + m, ..., (S-1)·M + m}.
  static std::vector<std::vector<int64_t>> by_member(int64_t splits, int64_t members);
  // Groups of equal labels (labels[k]: member k's label), ordered by label.
  static std::vector<std::vector<int64_t>> by_label(const std::vector<int64_t>& labels);

  int64_t size() const override { return static_cast<int64_t>(groups_.size()); }
  int64_t vocab_size() const override { return inner_->vocab_size(); }
  FamilyCache new_cache(int64_t capacity = 256) const override {
    return inner_->new_cache(capacity);
  }
  int64_t parameters_read_per_token() const override { return inner_->parameters_read_per_token(); }
  const Family& forwarded() const override { return inner_->forwarded(); }
  torch::Tensor forward(const torch::Tensor& ids, FamilyCache* cache = nullptr,
                        const torch::Tensor& attention_mask = {}, bool last_only = false) override;

 private:
  std::shared_ptr<Family> inner_;
  std::vector<std::vector<int64_t>> groups_;
};

}  // namespace drafteu
