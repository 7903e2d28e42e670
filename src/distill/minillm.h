// MiniLLM (Gu et al., Table 10): reverse KL KL(q_θ ‖ p_T) on the student's own samples, with the
// exact single-step term and the length-normalised policy-gradient term of losses.h. Every
// micro-batch samples `generations` responses per prompt of its rows.
#pragma once
#include "distill/forward.h"
#include "distill/on_policy.h"
#include "distill/trainer.h"

namespace drafteu::distill {

struct MiniLLMConfig {
  OnPolicyConfig on_policy = default_on_policy();
  LoraConfig lora = default_lora();

  static OnPolicyConfig default_on_policy();  // Table 10: 4 generations, max completion 400
  static LoraConfig
  default_lora();  // Table 10: all seven linear modules, r 16, alpha 32, dropout 0.1
  static TrainConfig default_train();  // Table 10: Table 8's settings with a cosine schedule
  void validate(const std::string& source) const;
};

class MiniLLMObjective : public Objective {
 public:
  MiniLLMObjective(LlamaForCausalLM student_base, Teacher teacher, MiniLLMConfig config,
                   uint64_t init_seed);
  std::string name() const override { return "minillm"; }
  LoraAdapterImpl& adapter() override { return *lora_; }
  Batch batch_for(const std::vector<const Sample*>& rows, int64_t max_len,
                  const StepContext& ctx) override;
  MicroLoss loss(const Batch& batch, const StepContext& ctx) override;
  nlohmann::json describe() const override;

 private:
  LlamaForCausalLM base_;
  Teacher teacher_;
  MiniLLMConfig config_;
  LoraAdapter lora_{nullptr};
};

}  // namespace drafteu::distill
