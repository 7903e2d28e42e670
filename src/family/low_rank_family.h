// K members that share one base model and differ by low-rank deltas (noise samples, LoRA
// drafts), forwarded together: the layers before the first perturbed module run once at batch B,
// then the hidden state and attention inputs are tiled member-major (row k·B + b) and every
// perturbed module adds all members' terms with batched matmuls (StackedDelta). The base weights
// are read once per call whatever K. A forward attaches the stacked deltas to the base model for
// the duration of the call, so the base must not be used concurrently from other threads.
// Cached calls with fixed float32 terms run on model/fast_forward (decoding); the rest, and
// per-token terms, on the module path.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "family/family.h"
#include "family/low_rank.h"
#include "family/stacked_delta.h"
#include "model/llama.h"

namespace drafteu {

class LowRankFamily : public Family {
 public:
  LowRankFamily(LlamaForCausalLM base, std::vector<MemberDeltas> members);

  int64_t size() const override { return static_cast<int64_t>(members_.size()); }
  int64_t vocab_size() const override { return base_->config().vocab_size; }
  FamilyCache new_cache(int64_t capacity = 256) const override;
  int64_t parameters_read_per_token() const override;  // the base's and every member's factors
  torch::Tensor forward(const torch::Tensor& ids, FamilyCache* cache = nullptr,
                        const torch::Tensor& attention_mask = {}, bool last_only = false) override;

  // Member k alone (its deltas attached to the base for the call) at batch B: [B, T, V].
  // Its cache is a plain KVCache from base()->new_cache().
  torch::Tensor forward_member(int64_t k, const torch::Tensor& ids, KVCache* cache = nullptr,
                               const torch::Tensor& attention_mask = {}, bool last_only = false);

  const LlamaForCausalLM& base() const { return base_; }
  const MemberDeltas& member(int64_t k) const { return members_.at(static_cast<size_t>(k)); }
  // The layer before which the batch expands to K·B (num_hidden_layers: only lm_head differs).
  int64_t expand_layer() const { return expand_layer_; }

  // Without a cache, members past the expansion run in chunks of at most max(1, rows / (B·T))
  // members: K·B·T-row activations (attention scores above all) outgrow the caches and cost
  // more than the batching saves. Decode steps and cached prefills run all K at once.
  void set_max_rows(int64_t rows) { max_rows_ = rows; }
  int64_t max_rows() const { return max_rows_; }

 private:
  LlamaForCausalLM base_;
  std::vector<MemberDeltas> members_;
  std::vector<std::pair<std::string, std::shared_ptr<StackedDelta>>> stacked_;
  bool per_token_ = false;
  int64_t expand_layer_ = 0;
  int64_t max_rows_ = 1024;
};

}  // namespace drafteu
