#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "distill/drafts.h"
#include "family/draft_source.h"
#include "family/ensemble.h"
#include "family/lora.h"
#include "family/low_rank_family.h"
#include "family/noise.h"
#include "family/peft.h"
#include "model/checkpoint.h"
#include "uncertainty/scoring/score_records.h"
#include "uncertainty/scoring/token_scorer.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"
#include "util/progress.h"

namespace drafteu::cli {

namespace {

struct ScoreFlags {
  std::string input, output;
  std::string target, noise = "lora-noise";
  int64_t family_size = 10, noise_rank = 8;
  double sigma = 0.1;
  uint64_t seed = 0;
  DraftSpec drafts;  // the same flags and defaults as generate and serve
  std::string drafts_csv;
  std::string reference, reference_adapter;
  int64_t chunk = 64;
};

// K noise members of the target: the ground truth.
std::shared_ptr<Family> noise_family(LlamaForCausalLM model, NoiseConfig config, int64_t k) {
  NoiseSampler sampler(*model, std::move(config));
  return std::make_shared<LowRankFamily>(model, sampler.members(k));
}

// The models the flags name, with what reading the records needs: a tokenizer (text records),
// the vocabulary and the shortest context.
struct ScoreModels {
  ScoringModels models;
  std::shared_ptr<Tokenizer> tok;
  int64_t vocab = 0, context = std::numeric_limits<int64_t>::max();
};

ScoreModels load_score_models(ScoreFlags& f) {
  DraftSpec& spec = f.drafts;
  take_draft_paths(spec, f.drafts_csv);
  // One draft alone has no spread: scoring asks for K members (serving allows one).
  if (!spec.draft.empty() && spec.noise_members == 0 && spec.family_dir.empty())
    fail("--draft needs --draft-noise K or --draft-family DIR");
  spec.validate();
  if (!f.reference_adapter.empty() && f.reference.empty())
    fail("--reference-adapter needs --reference");
  ScoreModels out;
  auto note = [&](const LoadedModel& m) {
    if (!out.tok) out.tok = m.tokenizer;
    out.vocab = m.config().vocab_size;
    out.context = std::min(out.context, m.config().max_position_embeddings);
  };
  if (!f.target.empty()) {
    LoadedModel t = load_model(f.target);
    note(t);
    NoiseConfig nc =
        f.noise == "tokur" ? NoiseConfig::tokur(f.seed) : NoiseConfig::target_family(f.seed);
    nc.sigma = f.sigma;
    nc.rank = f.noise_rank;
    out.models.target_family = noise_family(t.model, nc, f.family_size);
  }
  if (spec.enabled()) {
    DraftModels d = load_drafts(spec, nullptr);
    if (out.vocab != 0 && d.drafts->vocab_size() != out.vocab)
      fail("the drafts' vocabulary (", d.drafts->vocab_size(), ") differs from --target's (",
           out.vocab, ")");
    out.vocab = d.drafts->vocab_size();
    out.context = std::min(out.context, d.context);
    if (!out.tok) {  // text records need one; id records do not
      const std::string path = spec.draft.empty() ? spec.drafts.front() : spec.draft;
      try {
        out.tok = load_tokenizer(path);
      } catch (const Error&) {
      }
    }
    out.models.drafts = d.drafts;
  }
  if (!f.reference.empty()) {
    LoadedModel r = load_model(f.reference);
    note(r);
    if (!f.reference_adapter.empty()) {
      auto adapter = load_peft_adapter(f.reference_adapter, *r.model);
      adapter->attach(*r.model);
      out.models.keep_alive.push_back(adapter.ptr());
    }
    out.models.reference = std::make_shared<Ensemble>(Ensemble::of_one(r.model));
  }
  return out;
}

// One JSON line per response token; a non-finite value is an error naming the record.
std::string token_line(const std::string& input, size_t record, const ScoredToken& t) {
  nlohmann::json j = {{"record", record}, {"index", t.index}, {"id", t.id}, {"text", t.text}};
  auto put = [&](const char* key, const std::optional<double>& v) {
    if (!v) return;
    if (!std::isfinite(*v))  // JSON would write null: a non-finite model is an error
      fail(input, ": record ", record + 1, " token ", t.index, ": ", key, " is not finite (", *v,
           "); a model or adapter holds inf/NaN weights");
    j[key] = *v;
  };
  put("eu_true", t.eu_true);
  put("jsd", t.jsd);
  put("bias", t.bias);
  put("eu_hat", t.eu_hat);
  put("entropy_target", t.entropy_target);
  put("entropy_mix", t.entropy_mix);
  put("logprob", t.logprob);
  return dump_json(j) + "\n";
}

}  // namespace

void add_score_command(CLI::App& app, GlobalOptions&) {
  auto f = std::make_shared<ScoreFlags>();
  auto* cmd = app.add_subcommand(
      "score",
      "Per-token uncertainty of existing text: true EU from a target family and/or the "
      "draft estimator (JSD, bias, EU_hat)");
  cmd->add_option("--input", f->input,
                  "JSONL of {\"prompt\", \"response\"} or {\"prompt_ids\", \"response_ids\"}")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--output", f->output, "JSONL, one record per response token")->required();
  auto* target =
      cmd->add_option("--target", f->target, "target model (HF dir or .gguf): ground-truth family");
  cmd->add_option("--family-size", f->family_size, "members of the target family")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--noise", f->noise, "target perturbation")
      ->check(CLI::IsMember({"lora-noise", "tokur"}));
  cmd->add_option("--sigma", f->sigma, "noise standard deviation")->check(CLI::NonNegativeNumber);
  cmd->add_option("--noise-rank", f->noise_rank, "rank of each noise term")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", f->seed, "seed of the target family's noise");
  add_draft_flags(cmd, f->drafts, f->drafts_csv);
  cmd->add_option("--reference", f->reference,
                  "reference model for the bias term (p_mix or target)");
  cmd->add_option("--reference-adapter", f->reference_adapter,
                  "PEFT LoRA adapter on --reference (p_mix)");
  cmd->add_option("--chunk", f->chunk, "response positions per forward")
      ->check(CLI::PositiveNumber);
  (void)target;

  cmd->callback([f] {
    ScoreModels m = load_score_models(*f);
    // TokenScorer checks these too; here they name the flags.
    if (!m.models.target_family && !m.models.drafts)
      fail("score: give a target family (--target) and/or drafts (--drafts/--draft)");
    if (m.models.drafts && !m.models.reference && !m.models.target_family)
      fail("score: the draft estimator needs a reference model (--reference) or a target family");
    auto records = read_score_records(f->input, m.tok.get(), m.vocab, m.context);
    TokenScorer scorer(std::move(m.models), f->chunk);
    std::string out;
    ProgressBar progress("score", static_cast<int64_t>(records.size()), "records");
    const auto t0 = std::chrono::steady_clock::now();
    int64_t scored = 0;
    for (size_t r = 0; r < records.size(); ++r) {
      for (const auto& t : scorer.score(records[r].prompt, records[r].response, m.tok.get())) {
        out += token_line(f->input, r, t);
        ++scored;
      }
      progress.update(static_cast<int64_t>(r + 1));
    }
    progress.finish();
    // Scoring alone (models loaded): tools/score_bench.sh compares it with POST /v1/score.
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "score: %lld tokens in %.3f s (%.1f tokens/s)\n",
                 static_cast<long long>(scored), secs,
                 secs > 0 ? static_cast<double>(scored) / secs : 0.0);
    write_file_atomic(f->output, out);
  });
}

}  // namespace drafteu::cli
