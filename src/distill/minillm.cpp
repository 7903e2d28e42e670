#include "distill/minillm.h"

#include "distill/config.h"
#include "distill/drafts.h"
#include "distill/losses.h"
#include "family/seeding.h"
#include "util/error.h"

namespace drafteu::distill {

OnPolicyConfig MiniLLMConfig::default_on_policy() {
  OnPolicyConfig c;
  c.generations = 4;
  c.max_new_tokens = 400;
  return c;
}

LoraConfig MiniLLMConfig::default_lora() {
  return DraftFamilyConfig::default_lora();
}

TrainConfig MiniLLMConfig::default_train() {
  auto t = DraftFamilyConfig::default_train();
  t.schedule.kind = "cosine";
  return t;
}

void MiniLLMConfig::validate(const std::string& source) const {
  if (on_policy.generations < 1) fail(source, ": generations must be >= 1");
  if (on_policy.max_new_tokens < 1) fail(source, ": max_new_tokens must be >= 1");
  lora.validate(source + " lora");
}

MiniLLMObjective::MiniLLMObjective(LlamaForCausalLM student_base, Teacher teacher,
                                   MiniLLMConfig config, uint64_t init_seed)
    : base_(std::move(student_base)), teacher_(std::move(teacher)), config_(std::move(config)) {
  config_.validate("minillm");
  for (auto& p : base_->parameters()) p.set_requires_grad(false);
  torch::manual_seed(mix_seed({init_seed, 0x10d}));
  lora_ = LoraAdapter(*base_, config_.lora);
}

Batch MiniLLMObjective::batch_for(const std::vector<const Sample*>& rows, int64_t max_len,
                                  const StepContext& ctx) {
  auto samples = sample_from_student(*base_, *lora_, rows, config_.on_policy, ctx, max_len);
  std::vector<const Sample*> ptrs;
  for (const auto& s : samples) ptrs.push_back(&s);
  return make_batch(ptrs, max_len);
}

MicroLoss MiniLLMObjective::loss(const Batch& batch, const StepContext&) {
  auto teacher = teacher_logits(teacher_, batch);
  lora_->attach(*base_);
  auto student = loss_position_logits(*base_, batch);
  lora_->detach();
  auto targets = batch.targets.masked_select(batch.loss_mask);
  auto terms = minillm_loss(student, teacher, targets, batch.loss_mask);
  MicroLoss out;
  out.loss = terms.total;
  out.tokens = student.size(0);
  out.metrics["single_step"] = terms.single_step.item<double>();
  out.metrics["long_term"] = terms.long_term.item<double>();
  return out;
}

nlohmann::json MiniLLMObjective::describe() const {
  return to_json(config_);
}

}  // namespace drafteu::distill
