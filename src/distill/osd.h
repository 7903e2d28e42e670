// Online Stochastic Distillation (§3.4, B.1): p_mix, the proxy of the target family's mean, is the
// target plus a LoRA trained by forward KL against sampled teachers, mean_k KL(p_k ‖ p_student) per
// response token; the minimiser is the teachers' arithmetic mean.
//   teachers "family"    (B.1, the default): the M fixed members of the target family (noise seed
//                        `teacher_noise.seed`, members 0..M-1, the very members whose disagreement
//                        is the true EU); each micro-batch samples N_teacher of them without
//                        replacement, seeded by (run seed, step, micro-batch). p_mix learns p̄.
//   teachers "posterior" every micro-batch draws N_teacher fresh members of the noise
//                        distribution: p_mix learns the mean of the whole noise distribution.
#pragma once
#include "distill/trainer.h"
#include "family/noise.h"

namespace drafteu::distill {

struct OsdConfig {
  LoraConfig lora = default_lora();
  NoiseConfig teacher_noise = NoiseConfig::target_family(0);
  std::string teachers = "family";  // "family" | "posterior"
  int64_t family_members = 3;       // M, for teachers "family"
  int64_t n_teachers = 2;           // N_teacher per micro-batch (Table 7)

  static LoraConfig default_lora();    // Table 7: q_proj, v_proj, r 16, alpha 32, dropout 0.1
  static TrainConfig default_train();  // Table 7: lr 3e-4, wd 0.01, warmup 0.1, 8 x 8, 12 epochs
  void validate(const std::string& source) const;
};

// Which family members teach one micro-batch (teachers "family"): n_teachers distinct indices
// in [0, family_members), a function of (seed, step, micro) alone.
std::vector<int64_t> osd_teacher_members(const OsdConfig& config, const StepContext& ctx);
// The teachers of each micro-batch. Teachers "family" draws the M members once, here; teachers
// "posterior" draws N_teacher fresh members per micro-batch.
class OsdTeachers {
 public:
  OsdTeachers(LlamaForCausalLMImpl& target, OsdConfig config);
  std::vector<MemberDeltas> for_step(const StepContext& ctx) const;

 private:
  LlamaForCausalLMImpl& target_;
  OsdConfig config_;
  std::vector<MemberDeltas> family_;
};

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
  OsdTeachers teachers_;
  LoraAdapter lora_{nullptr};
};

}  // namespace drafteu::distill
