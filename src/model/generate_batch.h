// Batched sampling for many prompts at once (distillation data, on-policy student samples): the
// prompts are left-padded into one batch that shares a KV cache; each row has its own seeded
// sampler and stops at its own stop token, so a row's tokens depend on its prompt and seed only,
// not on which other rows share the batch.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "model/llama.h"
#include "model/sampling.h"

namespace drafteu {

struct BatchGenerateOptions {
  SamplingParams sampling;
  int64_t max_new_tokens = 128;
  std::vector<int64_t> stop_ids;  // a row ends after emitting one of these (kept in its output)
  int64_t pad_id = 0;             // fills the left padding (masked out)
};

// prompts[i] (non-empty) is sampled with Sampler(seeds[i]); returns each row's new tokens.
// Finished rows leave the batch (their cache rows are dropped).
std::vector<std::vector<int64_t>> generate_batch(LlamaForCausalLMImpl& model,
                                                 const std::vector<std::vector<int64_t>>& prompts,
                                                 const std::vector<uint64_t>& seeds,
                                                 const BatchGenerateOptions& options);

}  // namespace drafteu
