// Distinct models (different sizes, separately trained, or one plain model: a "family of one")
// behind the Family interface, forwarded member by member. Members must share the vocabulary.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "family/family.h"
#include "model/llama.h"

namespace drafteu {

class Ensemble : public Family {
 public:
  explicit Ensemble(std::vector<LlamaForCausalLM> members);
  static Ensemble of_one(LlamaForCausalLM model) { return Ensemble({std::move(model)}); }

  int64_t size() const override { return static_cast<int64_t>(members_.size()); }
  int64_t vocab_size() const override { return members_.front()->config().vocab_size; }
  FamilyCache new_cache(int64_t capacity = 256) const override;
  int64_t parameters_read_per_token() const override;  // every member's
  torch::Tensor forward(const torch::Tensor& ids, FamilyCache* cache = nullptr,
                        const torch::Tensor& attention_mask = {}, bool last_only = false) override;

  const LlamaForCausalLM& member(int64_t k) const { return members_.at(static_cast<size_t>(k)); }

 private:
  std::vector<LlamaForCausalLM> members_;
};

}  // namespace drafteu
