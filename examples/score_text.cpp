// Per-token epistemic uncertainty of a text: a target model, K drafts (low-rank noise members of
// a draft model, the paper's "K only" drafts), the draft estimator EU_hat = JSD + bias.
// Usage: score_text TARGET DRAFT TEXT [K]   (models: HF directories or .gguf files)
#include <cstdio>
#include <iostream>
#include <string>

#include "family/ensemble.h"
#include "family/low_rank_family.h"
#include "family/noise.h"
#include "model/checkpoint.h"
#include "uncertainty/scoring/token_scorer.h"
#include "util/error.h"
#include "util/json.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: score_text TARGET DRAFT TEXT [K]\n";
    return 2;
  }
  try {
    drafteu::LoadedModel target = drafteu::load_model(argv[1]);
    drafteu::LoadedModel draft = drafteu::load_model(argv[2]);
    if (!target.tokenizer) drafteu::fail(argv[1], ": the target carries no tokenizer");
    const int64_t k = argc > 4 ? std::stoll(argv[4]) : 4;

    drafteu::NoiseSampler sampler(*draft.model, drafteu::NoiseConfig::target_family(/*seed=*/1));
    drafteu::ScoringModels models;
    models.drafts = std::make_shared<drafteu::LowRankFamily>(draft.model, sampler.members(k));
    models.reference = std::make_shared<drafteu::Ensemble>(drafteu::Ensemble::of_one(target.model));
    drafteu::TokenScorer scorer(std::move(models));

    // The first token is the prompt (BOS when the tokenizer has one): every later one is scored.
    auto ids = target.tokenizer->encode(argv[3], target.tokenizer->bos_id().has_value());
    const std::vector<int64_t> all(ids.begin(), ids.end());
    if (all.size() < 2) drafteu::fail("TEXT: needs at least two tokens");
    const std::vector<int64_t> prompt(all.begin(), all.begin() + 1),
        text(all.begin() + 1, all.end());
    std::printf("index\ttoken (JSON)\teu_hat\tjsd\tbias\n");
    for (const auto& t : scorer.score(prompt, text, target.tokenizer.get()))
      std::printf("%lld\t%s\t%.6f\t%.6f\t%.6f\n", static_cast<long long>(t.index),
                  drafteu::dump_json(t.text).c_str(), *t.eu_hat, *t.jsd, *t.bias);
  } catch (const std::exception& e) {
    std::cerr << "score_text: " << e.what() << "\n";
    return 1;
  }
}
