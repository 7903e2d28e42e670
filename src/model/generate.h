// Autoregressive generation with a KV cache: prefill the prompt, then one decode step per token.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

#include "model/llama.h"
#include "model/sampling.h"

namespace drafteu {

struct GenerateOptions {
  SamplingParams sampling;
  int64_t max_new_tokens = 128;
  uint64_t seed = 0;
  std::vector<int64_t> stop_ids;  // generation ends after emitting one of these
};

struct GeneratedToken {
  int64_t id = 0;
  double logprob = 0;  // under the model's own (unwarped) distribution
};

// Returns the generated tokens; on_token sees each as it is made and may stop early (false).
std::vector<GeneratedToken> generate(
    LlamaForCausalLMImpl& model, const std::vector<int64_t>& prompt, const GenerateOptions& options,
    const std::function<bool(const GeneratedToken&)>& on_token = {});

}  // namespace drafteu
