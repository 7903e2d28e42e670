#include <sstream>

#include "cli/commands.h"
#include "family/draft_source.h"

namespace drafteu::cli {

void add_draft_flags(CLI::App* cmd, DraftSpec& spec, std::string& drafts_csv) {
  // The library's errors name these flags.
  spec.name_of = [](const std::string& member) -> std::string {
    if (member == "drafts") return "--drafts";
    if (member == "draft") return "--draft";
    if (member == "family_dir") return "--draft-family";
    if (member == "noise_members") return "--draft-noise";
    if (member == "sigma") return "--draft-sigma";
    if (member == "rank") return "--draft-rank";
    if (member == "seed") return "--draft-seed";
    if (member == "groups") return "--draft-groups";
    if (member == "reference_adapter") return "--reference-adapter";
    return member;
  };
  cmd->add_option("--drafts", drafts_csv, "draft models PATH[,PATH...] (HF dirs or .gguf)");
  cmd->add_option("--draft", spec.draft, "one draft model (with --draft-noise K: K noise members)");
  cmd->add_option("--draft-family", spec.family_dir,
                  "drafts trained by train-drafts (its --out DIR) on the base --draft");
  cmd->add_option("--draft-noise", spec.noise_members, "K lora-noise members of --draft")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--draft-sigma", spec.sigma, "noise sigma of the members")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--draft-rank", spec.rank, "noise rank of the members")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--draft-seed", spec.seed, "noise seed of the members");
  cmd->add_option("--draft-groups", spec.groups,
                  "with --draft-family: 'member' mixes the drafts that learnt one target member "
                  "and takes EU over those mixtures (the paper's 2x3 groups); 'none' (default)");
}

void take_draft_paths(DraftSpec& spec, const std::string& drafts_csv) {
  spec.drafts.clear();
  std::stringstream ss(drafts_csv);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) spec.drafts.push_back(item);
}

}  // namespace drafteu::cli
