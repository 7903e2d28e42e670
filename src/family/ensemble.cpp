#include "family/ensemble.h"

#include "util/error.h"

namespace drafteu {

Ensemble::Ensemble(std::vector<LlamaForCausalLM> members) : members_(std::move(members)) {
  if (members_.empty()) fail("Ensemble: needs at least one member");
  const int64_t v = members_.front()->config().vocab_size;
  for (size_t k = 0; k < members_.size(); ++k) {
    if (!members_[k]) fail("Ensemble: member ", k, " is null");
    if (members_[k]->config().vocab_size != v)
      fail("Ensemble: member ", k, " has vocabulary ", members_[k]->config().vocab_size,
           ", member 0 has ", v, " (members must share a tokenizer)");
  }
}

int64_t Ensemble::parameters_read_per_token() const {
  int64_t n = 0;
  for (const auto& m : members_) n += m->config().num_parameters_read_per_token();
  return n;
}

FamilyCache Ensemble::new_cache(int64_t capacity) const {
  std::vector<KVCache> caches;
  for (const auto& m : members_) caches.push_back(m->new_cache(capacity));
  return FamilyCache(std::move(caches));
}

torch::Tensor Ensemble::forward(const torch::Tensor& ids, FamilyCache* cache,
                                const torch::Tensor& attention_mask, bool last_only) {
  if (cache && cache->size() != members_.size())
    fail("Ensemble: cache holds ", cache->size(), " members' caches, the ensemble has ", size());
  // Each member's logits go straight into their slice of the output: one [K, B, T, V] buffer.
  torch::Tensor out;
  for (size_t k = 0; k < members_.size(); ++k) {
    auto logits =
        members_[k]->forward(ids, cache ? &cache->at(k) : nullptr, attention_mask, last_only);
    if (members_.size() == 1) return logits.unsqueeze(0);
    if (!out.defined()) {
      auto shape = logits.sizes().vec();
      shape.insert(shape.begin(), size());
      out = torch::empty(shape, logits.options());
    }
    out[static_cast<int64_t>(k)].copy_(logits);
  }
  return out;
}

}  // namespace drafteu
