// The one way to load drafts beside a target (generate, score and serve all use it, with the same
// defaults): distinct draft models, K noise members of one draft, or the drafts `train-drafts`
// wrote on a draft base; and the optional p_mix adapter on the target.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "family/family.h"
#include "family/low_rank.h"
#include "model/checkpoint.h"

namespace drafteu {

struct DraftSpec {
  std::vector<std::string> drafts;  // HF directories or .gguf files: an Ensemble
  std::string draft;                // one draft...
  int64_t noise_members = 0;        // ...as K lora-noise members (one batched pass); 0 = itself
  std::string family_dir;  // ...or with the drafts `train-drafts` wrote there (one batched pass)
  // With family_dir: "member" takes EU over one mixture per target member (the drafts that learnt
  // it, §4.4's imitated groups; family/grouped_family.h); "none" over every draft.
  std::string groups = "none";
  double sigma = 0.05;  // NoiseConfig::sigma of those members
  int64_t rank = 8;
  uint64_t seed = 0;
  std::string reference_adapter;  // PEFT adapter directory on the target (p_mix)
  // How errors name a setting, given its member's name ("noise_members"): the CLI names its flags
  // (cli/draft_flags.cpp), a config reader its fields; unset, "draft setting 'noise_members'".
  std::function<std::string(const std::string& member)> name_of;

  bool enabled() const { return !drafts.empty() || !draft.empty(); }
  std::string name(const std::string& member) const;
  void validate() const;  // throws drafteu::Error naming the settings (name())
};

struct DraftModels {
  std::shared_ptr<Family> drafts;
  std::optional<MemberDeltas> reference;
  std::string description;  // "3 drafts (noise of x.gguf, sigma 0.05)"
  int64_t context = 0;      // the shortest max_position_embeddings of the draft models
};

// The drafts must share the target's vocabulary; they are loaded with `options`. Without a
// target (nullptr) nothing is checked against it and `reference_adapter` must be empty.
DraftModels load_drafts(const DraftSpec& spec, const LoadedModel* target,
                        const LoadOptions& options = {});

}  // namespace drafteu
