#include "distill/on_policy.h"

#include <algorithm>

#include "family/seeding.h"
#include "model/generate_batch.h"

namespace drafteu::distill {

std::vector<Sample> sample_from_student(LlamaForCausalLMImpl& student, LoraAdapterImpl& lora,
                                        const std::vector<const Sample*>& rows,
                                        const OnPolicyConfig& config, const StepContext& ctx,
                                        int64_t max_len) {
  std::vector<std::vector<int64_t>> prompts;
  std::vector<uint64_t> seeds;
  std::vector<Sample> out;
  size_t longest = 0;
  for (size_t r = 0; r < rows.size(); ++r)
    for (int64_t g = 0; g < config.generations; ++g) {
      Sample s;
      s.prompt_index = rows[r]->prompt_index;
      s.prompt = rows[r]->prompt;
      s.prompt_ids = rows[r]->prompt_ids;
      s.member = -2;  // the student
      s.sample = g;
      s.seed = mix_seed({ctx.seed, static_cast<uint64_t>(ctx.step),
                         static_cast<uint64_t>(ctx.micro), r, static_cast<uint64_t>(g), 0x5a3});
      prompts.push_back(s.prompt_ids);
      seeds.push_back(s.seed);
      longest = std::max(longest, s.prompt_ids.size());
      out.push_back(std::move(s));
    }
  BatchGenerateOptions go;
  go.sampling = config.sampling;
  go.max_new_tokens = std::max<int64_t>(
      1, std::min(config.max_new_tokens, max_len - static_cast<int64_t>(longest)));
  go.stop_ids = student.config().eos_token_ids;
  const bool was_training = lora.is_training();
  lora.eval();
  lora.attach(student);
  auto responses = generate_batch(student, prompts, seeds, go);
  lora.detach();
  lora.train(was_training);
  for (size_t i = 0; i < out.size(); ++i) out[i].response_ids = std::move(responses[i]);
  return out;
}

}  // namespace drafteu::distill
