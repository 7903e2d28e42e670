// A family: K models whose next-token distributions are compared token by token (the members'
// disagreement is the epistemic uncertainty). One interface over a base model with K low-rank
// perturbations (LowRankFamily, batched) and over distinct models (Ensemble, member by member).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "model/kv_cache.h"

namespace drafteu {

// The KV caches of a family's forward passes: one for a batched family (its layers after the
// expansion hold K·B rows), one per member for an ensemble.
class FamilyCache {
 public:
  FamilyCache() = default;
  explicit FamilyCache(std::vector<KVCache> caches) : caches_(std::move(caches)) {}
  int64_t length() const { return caches_.empty() ? 0 : caches_.front().length(); }
  void truncate(int64_t new_length);
  void clear() { truncate(0); }
  void select_rows(const torch::Tensor& rows);  // rows of the base batch B
  // As KVCache's, for every member cache.
  void mask_positions(int64_t row, int64_t from, int64_t to);
  void append_rows(const FamilyCache& other);
  void compact(double min_fraction = 0.25);
  size_t size() const { return caches_.size(); }
  KVCache& at(size_t i) { return caches_.at(i); }
  const KVCache& at(size_t i) const { return caches_.at(i); }

 private:
  std::vector<KVCache> caches_;
};

class Family {
 public:
  virtual ~Family() = default;
  virtual int64_t size() const = 0;  // K
  virtual int64_t vocab_size() const = 0;
  virtual FamilyCache new_cache(int64_t capacity = 256) const = 0;
  // Weights one forward of all members reads (a batched family reads its base once): the cost
  // model of memory-bound decoding.
  virtual int64_t parameters_read_per_token() const = 0;
  // The family whose members one forward runs: itself, unless its members are derived from
  // another's (GroupedFamily's mixtures). What a cost counts.
  virtual const Family& forwarded() const { return *this; }
  // ids [B, T] -> logits [K, B, T, V] ([K, B, 1, V] with last_only); attention_mask and cache as
  // LlamaForCausalLM::forward (1 = real token; the new tokens follow the cached ones).
  virtual torch::Tensor forward(const torch::Tensor& ids, FamilyCache* cache = nullptr,
                                const torch::Tensor& attention_mask = {},
                                bool last_only = false) = 0;
};

}  // namespace drafteu
