// GKD (Agarwal et al.; TRL's GKDTrainer, Table 9): the generalized JSD of losses.h with β
// between the student and a teacher; with probability λ a batch's responses are replaced by
// student samples (on-policy), otherwise the dataset's responses are used.
#pragma once
#include "distill/forward.h"
#include "distill/on_policy.h"
#include "distill/trainer.h"

namespace drafteu::distill {

struct GkdConfig {
  double lambda = 0.5;  // on-policy fraction
  double beta = 0.5;
  OnPolicyConfig on_policy = default_on_policy();
  LoraConfig lora = default_lora();

  static OnPolicyConfig default_on_policy();  // Table 9: temperature 1, top-p 1, 400 new tokens
  static LoraConfig
  default_lora();  // Table 9: all seven linear modules, r 16, alpha 32, dropout 0.1
  static TrainConfig default_train();  // Table 9: Table 8's settings with a cosine schedule
  void validate(const std::string& source) const;
};

class GkdObjective : public Objective {
 public:
  GkdObjective(LlamaForCausalLM student_base, Teacher teacher, GkdConfig config,
               uint64_t init_seed);
  std::string name() const override { return "gkd"; }
  LoraAdapterImpl& adapter() override { return *lora_; }
  Batch batch_for(const std::vector<const Sample*>& rows, int64_t max_len,
                  const StepContext& ctx) override;
  MicroLoss loss(const Batch& batch, const StepContext& ctx) override;
  nlohmann::json describe() const override;
  // Whether micro-batch ctx is on-policy (a seeded draw against λ).
  bool on_policy(const StepContext& ctx) const;

 private:
  LlamaForCausalLM base_;
  Teacher teacher_;
  GkdConfig config_;
  LoraAdapter lora_{nullptr};
};

}  // namespace drafteu::distill
