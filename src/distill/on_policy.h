// On-policy data for GKD and MiniLLM: responses sampled from the student itself (its LoRA
// attached, no dropout), each row seeded by (run seed, step, micro-batch, row, generation).
#pragma once
#include <vector>

#include "distill/trainer.h"
#include "model/sampling.h"

namespace drafteu::distill {

struct OnPolicyConfig {
  SamplingParams sampling;       // temperature 1, top-p 1
  int64_t max_new_tokens = 128;  // also capped so a row fits max_len
  int64_t generations = 1;       // responses per prompt
};

// `generations` student responses for each row's prompt (rows sharing a prompt are sampled
// separately); stops at the model's EOS ids.
std::vector<Sample> sample_from_student(LlamaForCausalLMImpl& student, LoraAdapterImpl& lora,
                                        const std::vector<const Sample*>& rows,
                                        const OnPolicyConfig& config, const StepContext& ctx,
                                        int64_t max_len);

}  // namespace drafteu::distill
