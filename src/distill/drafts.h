// Draft families (§4.3, B.6): K drafts, each the draft base + its own LoRA, distilled by forward KL
// from a member of the target family.
//   DDD  S×M drafts; draft (s, m) trains on prompt partition s against target member m.
//   IDD  every draft on the full data, each from its own initial noise N(0, 0.5²) (where it
//        goes: DraftFamilyConfig::init_noise_at); draft (s, m) still learns from member m (set
//        teacher = "target" for the plain target).
//   FDD  both: partition s, member m and its own initial noise.
// Each draft is an independent job (its own output directory) so a family can be trained on
// several machines; the family is gathered by path afterwards. Also the inference-time families
// of the baselines: "K only" (one trained draft + K noise draws) and untrained drafts.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "distill/forward.h"
#include "distill/trainer.h"
#include "family/draft_family.h"
#include "family/low_rank_family.h"
#include "family/noise.h"

namespace drafteu::distill {

enum class DraftStrategy { DDD, IDD, FDD };
DraftStrategy parse_draft_strategy(const std::string& name);  // "ddd" | "idd" | "fdd"
std::string draft_strategy_name(DraftStrategy s);

struct DraftFamilyConfig {
  DraftStrategy strategy = DraftStrategy::DDD;
  int64_t splits = 2;     // S
  int64_t per_split = 3;  // M
  uint64_t partition_seed = 0;
  std::string teacher = "member";  // "member" (draft (s, m) <- member m) | "target"
  NoiseConfig teacher_noise = NoiseConfig::target_family(0);
  NoiseConfig init_noise = NoiseConfig::draft_init(1);
  // Where IDD/FDD's initial noise N(0, sigma²) goes (B.2: "noise modules ... injected into the
  // draft models"; the paper does not say more):
  //   "frozen"  a fixed low-rank delta under the trained LoRA, which must learn to cancel it;
  //   "adapter" the LoRA's own starting factors on the modules both target (balanced), so
  //             training moves the noise itself; noise on other modules stays frozen;
  //   "lora_a"  PEFT's initialisation with lora_A drawn from N(0, sigma²) (absolute, the LoRA's
  //             rank) instead of kaiming, and lora_B = 0: the draft starts as its base and the
  //             drafts differ only in how they train (§6: "random initialization alone fails to
  //             induce draft diversity"). The default: the one reading under which IDD/FDD
  //             are not destroyed, as Table 1 reports (README, "How the run follows the paper").
  std::string init_noise_at = "lora_a";
  LoraConfig lora = default_lora();

  static LoraConfig
  default_lora();  // Table 8: all seven linear modules, r 16, alpha 32, dropout 0.1
  static TrainConfig
  default_train();  // Table 8: lr 7e-5, weight decay 0, warmup 150 steps, batch 8, accum 2, 1 epoch
  void validate(const std::string& source) const;
};

struct DraftJob {
  int64_t index = 0;  // s·M + m
  int64_t split = 0, member = 0;
  bool partitioned = true;   // trains on partition `split` only
  bool init_noise = false;   // starts from init-noise member `index`
  std::string name() const;  // "draft-s0-m1"
};
std::vector<DraftJob> plan_draft_family(const DraftFamilyConfig& config);
// "--only s,m" / "--job i" selection; errors name the flag.
DraftJob find_draft_job(const std::vector<DraftJob>& jobs, int64_t split, int64_t member);

// The noise a draft starts from (empty unless job.init_noise); for "lora_a", terms of the LoRA's
// rank whose A is the adapter's start.
MemberDeltas draft_init_deltas(LlamaForCausalLMImpl& draft_base, const DraftFamilyConfig& config,
                               const DraftJob& job);
// The data a job trains on.
std::vector<Sample> draft_job_data(const std::vector<Sample>& all, const DraftFamilyConfig& config,
                                   const DraftJob& job);

// Forward-KL distillation of one draft.
class DraftObjective : public Objective {
 public:
  // init_deltas are placed as `init_at` says (DraftFamilyConfig::init_noise_at).
  DraftObjective(LlamaForCausalLM draft_base, Teacher teacher, LoraConfig lora,
                 MemberDeltas init_deltas, uint64_t init_seed, std::string name = "draft",
                 const std::string& init_at = "frozen");
  std::string name() const override { return name_; }
  LoraAdapterImpl& adapter() override { return *lora_; }
  MicroLoss loss(const Batch& batch, const StepContext& ctx) override;
  nlohmann::json describe() const override;

 private:
  void place_init_in_adapter(bool a_only);

  LlamaForCausalLM base_;
  Teacher teacher_;
  MemberDeltas init_;
  LoraAdapter lora_{nullptr};
  std::string name_;
};

// Trains job `job` into out/<job.name()>/ (resumable; writes draft.json describing the job).
TrainResult train_draft_job(LlamaForCausalLM draft_base, LlamaForCausalLM target,
                            const std::vector<Sample>& all, const DraftFamilyConfig& config,
                            const DraftJob& job, const TrainConfig& train_config,
                            const std::filesystem::path& out, nlohmann::json run_info = {});

}  // namespace drafteu::distill
