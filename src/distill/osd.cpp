#include "distill/osd.h"

#include "distill/config.h"
#include "distill/forward.h"
#include "distill/losses.h"
#include "family/seeding.h"
#include "util/error.h"

namespace drafteu::distill {

LoraConfig OsdConfig::default_lora() {
  LoraConfig c;
  c.r = 16, c.alpha = 32, c.dropout = 0.1;
  c.target_modules = {"q_proj", "v_proj"};
  return c;
}

TrainConfig OsdConfig::default_train() {
  TrainConfig t;
  t.lr = 3e-4, t.weight_decay = 0.01;
  t.schedule.kind = "linear", t.schedule.warmup_ratio = 0.1;
  t.batch_size = 8, t.grad_accum = 8, t.epochs = 12;
  return t;
}

void OsdConfig::validate(const std::string& source) const {
  lora.validate(source + " lora");
  teacher_noise.validate();
  if (n_teachers < 1) fail(source, ": n_teachers must be >= 1");
  if (teachers != "family" && teachers != "posterior")
    fail(source, ": teachers must be 'family' or 'posterior', got '", teachers, "'");
  if (teachers == "family" && (family_members < 1 || n_teachers > family_members))
    fail(source, ": n_teachers (", n_teachers, ") must lie in [1, family_members (", family_members,
         ")]");
}

std::vector<int64_t> osd_teacher_members(const OsdConfig& config, const StepContext& ctx) {
  // A partial Fisher-Yates shuffle of 0..M-1 with draws from a generator of (seed, step, micro).
  std::vector<int64_t> idx(static_cast<size_t>(config.family_members));
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  uint64_t state = mix_seed(
      {ctx.seed, static_cast<uint64_t>(ctx.step), static_cast<uint64_t>(ctx.micro), 0x05e});
  for (size_t i = 0; i < static_cast<size_t>(config.n_teachers); ++i) {
    state = mix_seed({state, i});
    const size_t j = i + static_cast<size_t>(state % (idx.size() - i));
    std::swap(idx[i], idx[j]);
  }
  idx.resize(static_cast<size_t>(config.n_teachers));
  return idx;
}

OsdTeachers::OsdTeachers(LlamaForCausalLMImpl& target, OsdConfig config)
    : target_(target), config_(std::move(config)) {
  config_.validate("osd");
  if (config_.teachers == "family")
    family_ = NoiseSampler(target_, config_.teacher_noise).members(config_.family_members);
}

std::vector<MemberDeltas> OsdTeachers::for_step(const StepContext& ctx) const {
  if (config_.teachers == "family") {
    std::vector<MemberDeltas> out;
    for (auto m : osd_teacher_members(config_, ctx)) out.push_back(family_[static_cast<size_t>(m)]);
    return out;
  }
  auto noise = config_.teacher_noise;
  noise.seed = mix_seed(
      {ctx.seed, static_cast<uint64_t>(ctx.step), static_cast<uint64_t>(ctx.micro), 0x05d});
  return NoiseSampler(target_, noise).members(config_.n_teachers);
}

OsdObjective::OsdObjective(LlamaForCausalLM target, OsdConfig config, uint64_t init_seed)
    : target_(std::move(target)), config_(std::move(config)), teachers_(*target_, config_) {
  for (auto& p : target_->parameters()) p.set_requires_grad(false);
  torch::manual_seed(mix_seed({init_seed, 0x10a}));
  lora_ = LoraAdapter(*target_, config_.lora);
}

MicroLoss OsdObjective::loss(const Batch& batch, const StepContext& ctx) {
  lora_->detach();  // teachers are the plain target plus noise
  auto teachers = members_logits(*target_, teachers_.for_step(ctx), batch);
  lora_->attach(*target_);
  auto student = loss_position_logits(*target_, batch);
  lora_->detach();
  MicroLoss out;
  out.loss = forward_kl_loss(student, teachers);
  out.tokens = student.size(0);
  return out;
}

nlohmann::json OsdObjective::describe() const {
  return to_json(config_);
}

}  // namespace drafteu::distill
