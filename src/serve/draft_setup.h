// Loading what speculative decoding needs beside the target, from command-line style settings:
// the drafts (distinct models, or K noise members of one draft) and the optional p_mix adapter.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "family/family.h"
#include "family/low_rank.h"
#include "model/checkpoint.h"

namespace drafteu::serve {

struct DraftSpec {
  std::vector<std::string> drafts;  // HF directories or .gguf files: an Ensemble
  std::string draft;                // one draft...
  int64_t noise_members = 0;        // ...as K lora-noise members (one batched pass); 0 = itself
  std::string family_dir;  // ...or with the drafts `train-drafts` wrote there (one batched pass)
  double sigma = 0.05;     // NoiseConfig::sigma of those members
  int64_t rank = 8;
  uint64_t seed = 0;
  std::string reference_adapter;  // PEFT adapter directory on the target (p_mix)

  bool enabled() const { return !drafts.empty() || !draft.empty(); }
  void validate() const;  // throws drafteu::Error naming the flag
};

struct SpeculativeModels {
  std::shared_ptr<Family> drafts;
  std::optional<MemberDeltas> reference;
  std::string description;  // "3 drafts (noise of x.gguf, sigma 0.05)"
};

// The drafts must share the target's vocabulary; they are loaded with `options`.
SpeculativeModels load_speculative_models(const DraftSpec& spec, const LoadedModel& target,
                                          const LoadOptions& options = {});

}  // namespace drafteu::serve
