// Distillation data: GSM8K-style prompts, the generated samples (one JSONL line each), seeded
// partitions by prompt, and padded training batches with a response-token mask.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/tokenizer/tokenizer.h"

namespace drafteu::distill {

// One prompt of a GSM8K-format file ({"question", "answer"}); `index` is its 0-based line.
struct Prompt {
  int64_t index = 0;
  std::string question, answer;
};
// Errors name the file, the line number and the field.
std::vector<Prompt> read_gsm8k(const std::filesystem::path& path);

// The instruction around a question (asks for the final answer in \boxed{}); the chat template
// wraps it as a user turn when `tok` has one. Returns token ids (BOS as the tokenizer wants).
std::string prompt_text(const std::string& question);
std::vector<int64_t> encode_prompt(const Tokenizer& tok, const std::string& question);

// One distillation example: a response sampled from target-family member `member` (-1 = the
// unperturbed target) for prompt `prompt_index`; `sample` counts responses per (prompt, member).
struct Sample {
  int64_t prompt_index = 0;
  int64_t member = -1;
  int64_t sample = 0;
  uint64_t seed = 0;
  std::string prompt, response;
  std::vector<int64_t> prompt_ids, response_ids;
};
nlohmann::json sample_to_json(const Sample& s);
// `where` names the file and line for errors.
Sample sample_from_json(const nlohmann::json& j, const std::string& where);
// Reads a samples JSONL file; a malformed line is an error naming the file and line number.
std::vector<Sample> read_samples(const std::filesystem::path& path);

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
