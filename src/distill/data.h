// Distillation data: GSM8K-style prompts, the generated samples (one JSONL line each), seeded
// partitions by prompt, and padded training batches with a response-token mask.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "distill/samples.h"
#include "model/tokenizer/tokenizer.h"

namespace drafteu::distill {

// The prompt_text of a question as token ids: the chat template wraps it as a user turn when `tok`
// has one (BOS as the tokenizer wants).
std::vector<int64_t> encode_prompt(const Tokenizer& tok, const std::string& question);

// Splits prompt indices into `shards` disjoint, near-equal parts by a permutation seeded with
// `seed` (all responses of a prompt land in the same part). Returns the sorted part `shard`.
std::vector<int64_t> prompt_partition(std::vector<int64_t> prompt_indices, int64_t shards,
                                      int64_t shard, uint64_t seed);
// The samples whose prompt lies in partition `shard` of `shards`.
std::vector<Sample> select_partition(const std::vector<Sample>& samples, int64_t shards,
                                     int64_t shard, uint64_t seed);

// A right-padded batch. Position t's logits predict token t + 1, so loss_mask[b, t] is true when
// ids[b, t + 1] is a response token; targets[b, t] = ids[b, t + 1] (0 past the end).
struct Batch {
  torch::Tensor ids;        // [B, T] int64
  torch::Tensor attention;  // [B, T] int64, 1 = real token
  torch::Tensor loss_mask;  // [B, T] bool
  torch::Tensor targets;    // [B, T] int64
  std::vector<int64_t> prompt_indices;
  int64_t loss_tokens() const;
};
// Responses are cut so that a row holds at most max_len tokens (prompts are never cut: a prompt
// of max_len tokens or more is an error naming its index).
Batch make_batch(const std::vector<const Sample*>& samples, int64_t max_len, int64_t pad_id = 0);

}  // namespace drafteu::distill
