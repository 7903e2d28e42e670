#include "family/draft_source.h"

#include <algorithm>

#include "family/draft_family.h"
#include "family/ensemble.h"
#include "family/grouped_family.h"
#include "family/low_rank_family.h"
#include "family/noise.h"
#include "family/peft.h"
#include "util/error.h"

namespace drafteu {

std::string DraftSpec::name(const std::string& member) const {
  return name_of ? name_of(member) : "draft setting '" + member + "'";
}

void DraftSpec::validate() const {
  if (!drafts.empty() && !draft.empty())
    fail(name("drafts"), " and ", name("draft"), " exclude each other");
  if (noise_members < 0) fail(name("noise_members"), " must be >= 0");
  if (noise_members > 0 && draft.empty()) fail(name("noise_members"), " needs ", name("draft"));
  if (!family_dir.empty() && draft.empty())
    fail(name("family_dir"), " needs ", name("draft"),
         " (the draft base the family was trained on)");
  if (!family_dir.empty() && noise_members > 0)
    fail(name("family_dir"), " and ", name("noise_members"), " exclude each other");
  if (groups != "none" && groups != "member")
    fail(name("groups"), " must be 'none' or 'member', got '", groups, "'");
  if (groups == "member" && family_dir.empty())
    fail(name("groups"), " member needs ", name("family_dir"),
         " (the drafts' target members are in its draft.json files)");
  if (!(sigma > 0)) fail(name("sigma"), " must be > 0");
  if (rank < 1) fail(name("rank"), " must be >= 1");
  if (!reference_adapter.empty() && !enabled())
    fail(name("reference_adapter"), " needs drafts (", name("drafts"), " or ", name("draft"), ")");
}

namespace {

LlamaForCausalLM load_draft(const std::string& path, const LoadedModel* target,
                            const LoadOptions& options) {
  LoadOptions lo = options;
  lo.tokenizer.reset();
  auto m = load_model(path, lo).model;
  m->eval();
  if (target && m->config().vocab_size != target->config().vocab_size)
    fail(path, ": draft vocabulary (", m->config().vocab_size, ") differs from the target's (",
         target->config().vocab_size, ")");
  return m;
}

}  // namespace

DraftModels load_drafts(const DraftSpec& spec, const LoadedModel* target,
                        const LoadOptions& options) {
  spec.validate();
  if (!spec.enabled()) fail("drafts needed: ", spec.name("drafts"), " or ", spec.name("draft"));
  DraftModels out;
  auto loaded = [&](const std::string& path, const LoadedModel* t, const LoadOptions& o) {
    auto m = load_draft(path, t, o);
    const int64_t ctx = m->config().max_position_embeddings;
    out.context = out.context == 0 ? ctx : std::min(out.context, ctx);
    return m;
  };
  if (!spec.drafts.empty()) {
    std::vector<LlamaForCausalLM> members;
    for (const auto& p : spec.drafts) members.push_back(loaded(p, target, options));
    out.drafts = std::make_shared<Ensemble>(std::move(members));
    out.description = cat(spec.drafts.size(), " draft(s)");
  } else if (!spec.family_dir.empty()) {
    auto family = load_draft_family(spec.family_dir, loaded(spec.draft, target, options));
    out.description = cat(family.size(), " trained drafts from ", spec.family_dir);
    out.drafts = std::make_shared<LowRankFamily>(std::move(family));
    if (spec.groups == "member") {
      auto grouped = std::make_shared<GroupedFamily>(
          out.drafts, GroupedFamily::by_label(draft_family_members(spec.family_dir)));
      out.description += cat(", as ", grouped->size(), " member groups");
      out.drafts = std::move(grouped);
    }
  } else if (spec.noise_members == 0) {
    out.drafts = std::make_shared<Ensemble>(Ensemble::of_one(loaded(spec.draft, target, options)));
    out.description = "1 draft";
  } else {
    auto base = loaded(spec.draft, target, options);
    NoiseConfig cfg = NoiseConfig::target_family(spec.seed);
    cfg.sigma = spec.sigma;
    cfg.rank = spec.rank;
    NoiseSampler sampler(*base, cfg);
    out.drafts = std::make_shared<LowRankFamily>(base, sampler.members(spec.noise_members));
    out.description = cat(spec.noise_members, " noise members of one draft (sigma ", spec.sigma,
                          ", rank ", spec.rank, ", seed ", spec.seed, ")");
  }
  if (!spec.reference_adapter.empty()) {
    if (!target) fail(spec.name("reference_adapter"), " needs a target to apply it to");
    auto adapter = load_peft_adapter(spec.reference_adapter, *target->model.ptr());
    out.reference = adapter->to_member();
    out.description += ", reference = target + " + spec.reference_adapter;
  }
  return out;
}

}  // namespace drafteu
