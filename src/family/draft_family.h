// Families of drafts as files: the JSON form of a noise config, and a directory of drafts
// `train-drafts` wrote (draft-*/adapter + draft.json) read back as one batched family. Reading
// belongs here, beside the families; distill/ only writes these directories.
#pragma once
#include <filesystem>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "family/low_rank_family.h"
#include "family/noise.h"

namespace drafteu {

namespace config {  // util/config_fields.h
struct Where;
template <typename S>
class Fields;
}  // namespace config

const config::Fields<NoiseConfig>& noise_config_fields();
nlohmann::json to_json(const NoiseConfig& c);
// `defaults` overridden by the fields of `j`; errors name `where` and the field.
NoiseConfig noise_config_from_json(const nlohmann::json& j, const config::Where& where,
                                   NoiseConfig defaults = NoiseConfig::target_family(0));

// Two members' terms on the same modules summed as one term of concatenated rank.
MemberDeltas combine_deltas(const MemberDeltas& a, const MemberDeltas& b);

// The drafts under `family_dir` (every draft-*/ holding adapter/ and draft.json) as one family
// over `draft_base`, in job order. Errors name the directory.
LowRankFamily load_draft_family(const std::filesystem::path& family_dir,
                                LlamaForCausalLM draft_base);

// The target member each of those drafts learnt (draft.json's "member"), in the same order.
std::vector<int64_t> draft_family_members(const std::filesystem::path& family_dir);

// "K only": `trained` (a draft's deltas) plus K noise draws of `noise`; with `trained` empty this
// is the untrained-drafts baseline (base draft + K noise draws).
LowRankFamily noisy_draft_family(LlamaForCausalLM draft_base, const MemberDeltas& trained,
                                 int64_t k, const NoiseConfig& noise);

}  // namespace drafteu
