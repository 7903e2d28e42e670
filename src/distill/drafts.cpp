#include "distill/drafts.h"

#include <algorithm>

#include "distill/config.h"
#include "distill/losses.h"
#include "family/peft.h"
#include "family/seeding.h"
#include "util/error.h"
#include "util/file.h"

namespace drafteu::distill {

namespace fs = std::filesystem;
using json = nlohmann::json;

DraftStrategy parse_draft_strategy(const std::string& name) {
  if (name == "ddd") return DraftStrategy::DDD;
  if (name == "idd") return DraftStrategy::IDD;
  if (name == "fdd") return DraftStrategy::FDD;
  fail("unknown draft strategy '", name, "' (known: ddd, idd, fdd)");
}

std::string draft_strategy_name(DraftStrategy s) {
  switch (s) {
    case DraftStrategy::DDD:
      return "ddd";
    case DraftStrategy::IDD:
      return "idd";
    case DraftStrategy::FDD:
      return "fdd";
  }
  return "?";
}

LoraConfig DraftFamilyConfig::default_lora() {
  LoraConfig c;
  c.r = 16, c.alpha = 32, c.dropout = 0.1;
  c.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return c;
}

TrainConfig DraftFamilyConfig::default_train() {
  TrainConfig t;
  t.lr = 7e-5, t.weight_decay = 0.0;
  t.schedule.kind = "linear", t.schedule.warmup_steps = 150;
  t.batch_size = 8, t.grad_accum = 2, t.epochs = 1;
  return t;
}

void DraftFamilyConfig::validate(const std::string& source) const {
  if (splits < 1) fail(source, ": field 'splits' must be >= 1, got ", splits);
  if (per_split < 1) fail(source, ": field 'per_split' must be >= 1, got ", per_split);
  if (teacher != "member" && teacher != "target")
    fail(source, ": teacher '", teacher, "' is not one of member, target");
  if (init_noise_at != "frozen" && init_noise_at != "adapter" && init_noise_at != "lora_a")
    fail(source, ": init_noise_at '", init_noise_at, "' is not one of frozen, adapter, lora_a");
  lora.validate(source + " lora");
  teacher_noise.validate();
  init_noise.validate();
}

std::string DraftJob::name() const {
  return cat("draft-s", split, "-m", member);
}

std::vector<DraftJob> plan_draft_family(const DraftFamilyConfig& c) {
  c.validate("draft family");
  std::vector<DraftJob> jobs;
  for (int64_t s = 0; s < c.splits; ++s)
    for (int64_t m = 0; m < c.per_split; ++m) {
      DraftJob j;
      j.index = s * c.per_split + m, j.split = s, j.member = m;
      j.partitioned = c.strategy != DraftStrategy::IDD;
      j.init_noise = c.strategy != DraftStrategy::DDD;
      jobs.push_back(j);
    }
  return jobs;
}

DraftJob find_draft_job(const std::vector<DraftJob>& jobs, int64_t split, int64_t member) {
  for (const auto& j : jobs)
    if (j.split == split && j.member == member) return j;
  fail("--only ", split, ",", member, ": no such draft (splits x per-split is ",
       jobs.empty() ? 0 : jobs.back().split + 1, " x ", jobs.empty() ? 0 : jobs.back().member + 1,
       ")");
}

MemberDeltas draft_init_deltas(LlamaForCausalLMImpl& base, const DraftFamilyConfig& c,
                               const DraftJob& job) {
  if (!job.init_noise) return {};
  if (c.init_noise_at != "lora_a") return NoiseSampler(base, c.init_noise).member(job.index);
  NoiseConfig a_start = c.init_noise;
  a_start.rank = c.lora.r;
  a_start.relative = false;  // lora_A's entries ~ N(0, sigma²), as B.2 writes
  a_start.target_modules = lora_target_modules(base, c.lora);
  return NoiseSampler(base, a_start).member(job.index);
}

std::vector<Sample> draft_job_data(const std::vector<Sample>& all, const DraftFamilyConfig& c,
                                   const DraftJob& job) {
  if (!job.partitioned) return all;
  return select_partition(all, c.splits, job.split, c.partition_seed);
}

DraftObjective::DraftObjective(LlamaForCausalLM draft_base, Teacher teacher, LoraConfig lora,
                               MemberDeltas init_deltas, uint64_t init_seed, std::string name,
                               const std::string& init_at)
    : base_(std::move(draft_base)),
      teacher_(std::move(teacher)),
      init_(std::move(init_deltas)),
      name_(std::move(name)) {
  if (!teacher_.model) fail("draft: no teacher model");
  if (teacher_.model->config().vocab_size != base_->config().vocab_size)
    fail("draft: the draft's vocabulary (", base_->config().vocab_size,
         ") differs from the target's (", teacher_.model->config().vocab_size, ")");
  for (auto& p : base_->parameters()) p.set_requires_grad(false);
  for (auto& p : teacher_.model->parameters()) p.set_requires_grad(false);
  torch::manual_seed(mix_seed({init_seed, 0x10b}));
  lora_ = LoraAdapter(*base_, std::move(lora));
  if (init_at == "adapter" || init_at == "lora_a") {
    place_init_in_adapter(init_at == "lora_a");
  } else if (init_at != "frozen") {
    fail("draft ", name_, ": init noise placement '", init_at, "' is not frozen, adapter, lora_a");
  }
}

void DraftObjective::place_init_in_adapter(bool a_only) {
  torch::NoGradGuard no_grad;
  if (a_only) {  // lora_A's start only; lora_B stays 0, so nothing is left to attach
    for (const auto& [module, layer] : lora_->layers()) {
      const auto it = init_.find(module);
      if (it == init_.end()) continue;
      if (it->second.a.sizes() != layer->lora_A.sizes())
        fail("draft ", name_, ": lora_A start of shape ", it->second.a.sizes(), " for ", module,
             ", whose lora_A is ", layer->lora_A.sizes());
      layer->lora_A.copy_(it->second.a.to(layer->lora_A.options()));
    }
    init_.clear();
    return;
  }
  for (const auto& [module, layer] : lora_->layers()) {
    const auto it = init_.find(module);
    if (it == init_.end()) continue;
    const LowRankTerm& t = it->second;
    if (t.per_token()) fail("draft ", name_, ": per-token noise cannot start a LoRA adapter");
    const int64_t r = t.rank();
    if (r > layer->lora_A.size(0))
      fail("draft ", name_, ": init noise of rank ", r, " does not fit the LoRA's rank ",
           layer->lora_A.size(0), " (", module, ")");
    // scaling·(c·B)(c·A) = t.scale·B·A with c² = t.scale / scaling; the LoRA's other ranks keep
    // PEFT's start (B = 0), so the adapter's delta starts equal to the noise.
    const double c = std::sqrt(t.scale / layer->scaling);
    layer->lora_A.narrow(0, 0, r).copy_(t.a.to(layer->lora_A.options()) * c);
    layer->lora_B.narrow(1, 0, r).copy_(t.b.to(layer->lora_B.options()) * c);
    init_.erase(it);
  }
}

MicroLoss DraftObjective::loss(const Batch& batch, const StepContext&) {
  // Teacher first, with nothing of the student attached (the bases may be one model).
  auto teacher = teacher_logits(teacher_, batch);
  AttachedDeltas init;
  if (!init_.empty()) init = attach_member(*base_, init_);
  lora_->attach(*base_);
  auto student = loss_position_logits(*base_, batch);
  lora_->detach();
  MicroLoss out;
  out.loss = forward_kl_loss(student, teacher);
  out.tokens = student.size(0);
  return out;
}

json DraftObjective::describe() const {
  return {{"lora", to_json(lora_->config())},
          {"init_noise", !init_.empty()},
          {"teacher_member", !teacher_.deltas.empty()}};
}

TrainResult train_draft_job(LlamaForCausalLM draft_base, LlamaForCausalLM target,
                            const std::vector<Sample>& all, const DraftFamilyConfig& c,
                            const DraftJob& job, const TrainConfig& train_config,
                            const fs::path& out, json run_info) {
  c.validate("draft family");
  const fs::path dir = out / job.name();
  Teacher teacher{target, {}};
  if (c.teacher == "member")
    teacher.deltas = NoiseSampler(*target, c.teacher_noise).member(job.member);
  auto data = draft_job_data(all, c, job);
  if (data.empty()) fail("draft ", job.name(), ": its partition holds no samples");
  TrainConfig tc = train_config;
  tc.seed = mix_seed({train_config.seed, static_cast<uint64_t>(job.index)});
  json desc = {{"index", job.index},
               {"split", job.split},
               {"member", job.member},
               {"partitioned", job.partitioned},
               {"init_noise", job.init_noise},
               {"strategy", draft_strategy_name(c.strategy)},
               {"splits", c.splits},
               {"per_split", c.per_split},
               {"partition_seed", c.partition_seed},
               {"teacher", c.teacher},
               {"teacher_noise", to_json(c.teacher_noise)},
               {"init_noise_config", to_json(c.init_noise)}};
  const std::string init_at = job.init_noise ? c.init_noise_at : "frozen";
  if (init_at != "frozen") desc["init_noise_at"] = init_at;  // absent = frozen (older drafts)
  fs::create_directories(dir);
  write_file_atomic(dir / "draft.json", desc.dump(2) + "\n");
  DraftObjective objective(draft_base, teacher, c.lora, draft_init_deltas(*draft_base, c, job),
                           tc.seed, job.name(), init_at);
  run_info["draft"] = desc;
  return train(objective, data, tc, dir, run_info);
}

}  // namespace drafteu::distill
