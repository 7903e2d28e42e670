#include "serve/draft_setup.h"

#include "family/draft_family.h"
#include "family/ensemble.h"
#include "family/low_rank_family.h"
#include "family/noise.h"
#include "family/peft.h"
#include "util/error.h"

namespace drafteu::serve {

void DraftSpec::validate() const {
  if (!drafts.empty() && !draft.empty()) fail("--drafts and --draft exclude each other");
  if (noise_members < 0) fail("--draft-noise must be >= 0");
  if (noise_members > 0 && draft.empty()) fail("--draft-noise needs --draft");
  if (!family_dir.empty() && draft.empty())
    fail("--draft-family needs --draft (the draft base the family was trained on)");
  if (!family_dir.empty() && noise_members > 0)
    fail("--draft-family and --draft-noise exclude each other");
  if (!(sigma > 0)) fail("--draft-sigma must be > 0");
  if (rank < 1) fail("--draft-rank must be >= 1");
  if (!reference_adapter.empty() && !enabled())
    fail("--reference-adapter needs drafts (--drafts or --draft)");
}

namespace {

LlamaForCausalLM load_draft(const std::string& path, const LoadedModel& target,
                            const LoadOptions& options) {
  LoadOptions lo = options;
  lo.tokenizer.reset();
  auto m = load_model(path, lo).model;
  m->eval();
  if (m->config().vocab_size != target.config().vocab_size)
    fail(path, ": draft vocabulary (", m->config().vocab_size, ") differs from the target's (",
         target.config().vocab_size, ")");
  return m;
}

}  // namespace

SpeculativeModels load_speculative_models(const DraftSpec& spec, const LoadedModel& target,
                                          const LoadOptions& options) {
  spec.validate();
  if (!spec.enabled()) fail("speculative decoding needs --drafts or --draft");
  SpeculativeModels out;
  if (!spec.drafts.empty()) {
    std::vector<LlamaForCausalLM> members;
    for (const auto& p : spec.drafts) members.push_back(load_draft(p, target, options));
    out.drafts = std::make_shared<Ensemble>(std::move(members));
    out.description = cat(spec.drafts.size(), " draft(s)");
  } else if (!spec.family_dir.empty()) {
    auto family = load_draft_family(spec.family_dir, load_draft(spec.draft, target, options));
    out.description = cat(family.size(), " trained drafts from ", spec.family_dir);
    out.drafts = std::make_shared<LowRankFamily>(std::move(family));
  } else if (spec.noise_members == 0) {
    out.drafts =
        std::make_shared<Ensemble>(Ensemble::of_one(load_draft(spec.draft, target, options)));
    out.description = "1 draft";
  } else {
    auto base = load_draft(spec.draft, target, options);
    NoiseConfig cfg = NoiseConfig::target_family(spec.seed);
    cfg.sigma = spec.sigma;
    cfg.rank = spec.rank;
    NoiseSampler sampler(*base, cfg);
    out.drafts = std::make_shared<LowRankFamily>(base, sampler.members(spec.noise_members));
    out.description = cat(spec.noise_members, " noise members of one draft (sigma ", spec.sigma,
                          ", rank ", spec.rank, ", seed ", spec.seed, ")");
  }
  if (!spec.reference_adapter.empty()) {
    auto adapter = load_peft_adapter(spec.reference_adapter, *target.model.ptr());
    out.reference = adapter->to_member();
    out.description += ", reference = target + " + spec.reference_adapter;
  }
  return out;
}

}  // namespace drafteu::serve
