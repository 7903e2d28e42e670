// Online Stochastic Distillation (§3.4): p_mix, the proxy of the target family's mean, is the
// target plus a LoRA trained against fresh noisy teachers. Every micro-batch draws N_teacher new
// members of the target's noise distribution (σ 0.1, seeded by (run seed, step, micro-batch)) and
// minimises mean_k KL(p_k ‖ p_student) per response token; the minimiser is the teachers'
// arithmetic mean, so over training the student tracks the family's mean distribution.
#pragma once
#include "distill/trainer.h"
#include "family/noise.h"

namespace drafteu::distill {

struct OsdConfig {
  LoraConfig lora = default_lora();
  NoiseConfig teacher_noise = NoiseConfig::target_family(0);  // seed replaced per micro-batch
  int64_t n_teachers = 2;

  static LoraConfig default_lora();    // Table 7: q_proj, v_proj, r 16, alpha 32, dropout 0.1
  static TrainConfig default_train();  // Table 7: lr 3e-4, wd 0.01, warmup 0.1, 8 x 8, 12 epochs
  void validate(const std::string& source) const;
};

// The teachers of one micro-batch.
std::vector<MemberDeltas> osd_teachers(LlamaForCausalLMImpl& target, const OsdConfig& config,
                                       const StepContext& ctx);

class OsdObjective : public Objective {
 public:
  // The LoRA is initialised from init_seed (PEFT's initialisation, B = 0).
  OsdObjective(LlamaForCausalLM target, OsdConfig config, uint64_t init_seed);
  std::string name() const override { return "osd"; }
  LoraAdapterImpl& adapter() override { return *lora_; }
  MicroLoss loss(const Batch& batch, const StepContext& ctx) override;
  nlohmann::json describe() const override;

 private:
  LlamaForCausalLM target_;
  OsdConfig config_;
  LoraAdapter lora_{nullptr};
};

}  // namespace drafteu::distill
