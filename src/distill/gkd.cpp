#include "distill/gkd.h"

#include <random>

#include "distill/config.h"
#include "distill/drafts.h"
#include "distill/losses.h"
#include "family/seeding.h"
#include "util/error.h"

namespace drafteu::distill {

OnPolicyConfig GkdConfig::default_on_policy() {
  OnPolicyConfig c;
  c.max_new_tokens = 400;
  return c;
}

LoraConfig GkdConfig::default_lora() {
  return DraftFamilyConfig::default_lora();
}

TrainConfig GkdConfig::default_train() {
  auto t = DraftFamilyConfig::default_train();
  t.schedule.kind = "cosine";
  return t;
}

void GkdConfig::validate(const std::string& source) const {
  if (!(lambda >= 0 && lambda <= 1)) fail(source, ": lambda must lie in [0, 1]");
  if (!(beta >= 0 && beta <= 1)) fail(source, ": beta must lie in [0, 1]");
  if (on_policy.max_new_tokens < 1) fail(source, ": max_new_tokens must be >= 1");
  lora.validate(source + " lora");
}

GkdObjective::GkdObjective(LlamaForCausalLM student_base, Teacher teacher, GkdConfig config,
                           uint64_t init_seed)
    : base_(std::move(student_base)), teacher_(std::move(teacher)), config_(std::move(config)) {
  config_.validate("gkd");
  for (auto& p : base_->parameters()) p.set_requires_grad(false);
  torch::manual_seed(mix_seed({init_seed, 0x10c}));
  lora_ = LoraAdapter(*base_, config_.lora);
}

bool GkdObjective::on_policy(const StepContext& ctx) const {
  std::mt19937_64 rng(mix_seed(
      {ctx.seed, static_cast<uint64_t>(ctx.step), static_cast<uint64_t>(ctx.micro), 0x6cd}));
  return static_cast<double>(rng() >> 11) * 0x1.0p-53 < config_.lambda;
}

Batch GkdObjective::batch_for(const std::vector<const Sample*>& rows, int64_t max_len,
                              const StepContext& ctx) {
  if (!on_policy(ctx)) return make_batch(rows, max_len);
  auto samples = sample_from_student(*base_, *lora_, rows, config_.on_policy, ctx, max_len);
  std::vector<const Sample*> ptrs;
  for (const auto& s : samples) ptrs.push_back(&s);
  return make_batch(ptrs, max_len);
}

MicroLoss GkdObjective::loss(const Batch& batch, const StepContext&) {
  auto teacher = teacher_logits(teacher_, batch);
  lora_->attach(*base_);
  auto student = loss_position_logits(*base_, batch);
  lora_->detach();
  MicroLoss out;
  out.loss = generalized_jsd_loss(student, teacher, config_.beta);
  out.tokens = student.size(0);
  return out;
}

nlohmann::json GkdObjective::describe() const {
  return to_json(config_);
}

}  // namespace drafteu::distill
