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
#include "family/ensemble.h"
#include "family/lora.h"
#include "family/low_rank_family.h"
#include "family/noise.h"
#include "family/peft.h"
#include "model/checkpoint.h"
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
  std::string drafts, draft;
  int64_t draft_noise = 0;
  std::string draft_family;
  double draft_sigma = 0.1;
  std::string reference, reference_adapter;
  int64_t chunk = 64;
};

std::vector<std::string> split_paths(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// K noise members of one model: the target family (ground truth) or "K only" drafts.
std::shared_ptr<Family> noise_family(LlamaForCausalLM model, NoiseConfig config, int64_t k) {
  NoiseSampler sampler(*model, std::move(config));
  return std::make_shared<LowRankFamily>(model, sampler.members(k));
}

struct Record {
  std::vector<int64_t> prompt, response;
};

std::vector<int64_t> ids_field(const nlohmann::json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) fail(where, ": field '", key, "' is missing");
  if (!it->is_array()) fail(where, ": field '", key, "' must be an array of token ids");
  std::vector<int64_t> ids;
  for (const auto& v : *it) {
    if (!v.is_number_integer()) fail(where, ": field '", key, "' must hold integers");
    ids.push_back(v.get<int64_t>());
  }
  return ids;
}

// A record is a prompt and a response that fit the model's context: a line longer than this
// cannot be one (1M tokens of ids or text), and is refused before it is parsed.
constexpr size_t kMaxLineBytes = size_t{16} << 20;

std::vector<Record> read_records(const std::string& path, const Tokenizer* tok, int64_t vocab,
                                 int64_t context) {
  std::istringstream in(read_text_file(path));
  std::vector<Record> records;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = path + ":" + std::to_string(line_no);
    if (line.size() > kMaxLineBytes)
      fail(where, ": line of ", line.size(), " bytes exceeds the limit of ", kMaxLineBytes);
    nlohmann::json j;
    try {
      check_json_depth(line, where);
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error&) {
      fail(where, ": not valid JSON");
    }
    if (!j.is_object()) fail(where, ": expected a JSON object");
    Record r;
    if (j.contains("prompt_ids") || j.contains("response_ids")) {
      r.prompt = ids_field(j, "prompt_ids", where);
      r.response = ids_field(j, "response_ids", where);
    } else {
      if (!j.contains("prompt") || !j["prompt"].is_string())
        fail(where, ": field 'prompt' (string) is missing");
      if (!j.contains("response") || !j["response"].is_string())
        fail(where, ": field 'response' (string) is missing");
      if (!tok) fail(where, ": text records need a model with a tokenizer");
      auto p = tok->encode(j["prompt"].get<std::string>(), tok->bos_id().has_value());
      auto q = tok->encode(j["response"].get<std::string>(), false);
      r.prompt.assign(p.begin(), p.end());
      r.response.assign(q.begin(), q.end());
    }
    if (r.prompt.empty()) fail(where, ": the prompt encodes to no tokens (and there is no BOS)");
    for (const auto* ids : {&r.prompt, &r.response})
      for (auto id : *ids)
        if (id < 0 || id >= vocab)
          fail(where, ": token id ", id, " is outside the vocabulary (", vocab, ")");
    const auto length = static_cast<int64_t>(r.prompt.size() + r.response.size());
    if (length > context)
      fail(where, ": prompt and response are ", length,
           " tokens, longer than the models' context of ", context, " (max_position_embeddings)");
    records.push_back(std::move(r));
  }
  return records;
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
  auto* drafts =
      cmd->add_option("--drafts", f->drafts, "draft models, comma-separated (HF dirs or .gguf)");
  auto* draft =
      cmd->add_option("--draft", f->draft, "one draft model made a family by --draft-noise");
  cmd->add_option("--draft-family", f->draft_family,
                  "drafts trained by train-drafts (its --out DIR) on the base --draft");
  cmd->add_option("--draft-noise", f->draft_noise, "K noise members of --draft (\"K only\")")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--draft-sigma", f->draft_sigma, "noise of --draft-noise members")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--reference", f->reference,
                  "reference model for the bias term (p_mix or target)");
  cmd->add_option("--reference-adapter", f->reference_adapter,
                  "PEFT LoRA adapter on --reference (p_mix)");
  cmd->add_option("--chunk", f->chunk, "response positions per forward")
      ->check(CLI::PositiveNumber);
  drafts->excludes(draft);
  (void)target;

  cmd->callback([f] {
    if (!f->draft.empty() && f->draft_noise == 0 && f->draft_family.empty())
      fail("--draft needs --draft-noise K or --draft-family DIR");
    if (!f->draft_family.empty() && (f->draft.empty() || f->draft_noise > 0))
      fail("--draft-family needs --draft (its base) and excludes --draft-noise");
    if (f->draft.empty() && f->draft_noise > 0) fail("--draft-noise needs --draft PATH");
    if (!f->reference_adapter.empty() && f->reference.empty())
      fail("--reference-adapter needs --reference");
    ScoringModels models;
    std::shared_ptr<Tokenizer> tok;
    int64_t vocab = 0;
    int64_t context = std::numeric_limits<int64_t>::max();
    auto note = [&](const LoadedModel& m) {
      if (!tok) tok = m.tokenizer;
      vocab = m.config().vocab_size;
      context = std::min(context, m.config().max_position_embeddings);
    };
    if (!f->target.empty()) {
      LoadedModel t = load_model(f->target);
      note(t);
      NoiseConfig nc =
          f->noise == "tokur" ? NoiseConfig::tokur(f->seed) : NoiseConfig::target_family(f->seed);
      nc.sigma = f->sigma;
      nc.rank = f->noise_rank;
      models.target_family = noise_family(t.model, nc, f->family_size);
    }
    if (!f->drafts.empty()) {
      std::vector<LlamaForCausalLM> members;
      for (const auto& p : split_paths(f->drafts)) {
        LoadedModel d = load_model(p);
        note(d);
        members.push_back(d.model);
      }
      models.drafts = std::make_shared<Ensemble>(std::move(members));
    } else if (!f->draft.empty()) {
      LoadedModel d = load_model(f->draft);
      note(d);
      if (!f->draft_family.empty()) {
        models.drafts =
            std::make_shared<LowRankFamily>(load_draft_family(f->draft_family, d.model));
      } else {
        NoiseConfig nc = NoiseConfig::target_family(f->seed + 1);
        nc.sigma = f->draft_sigma;
        models.drafts = noise_family(d.model, nc, f->draft_noise);
      }
    }
    if (!f->reference.empty()) {
      LoadedModel r = load_model(f->reference);
      note(r);
      if (!f->reference_adapter.empty()) {
        auto adapter = load_peft_adapter(f->reference_adapter, *r.model);
        adapter->attach(*r.model);
        models.keep_alive.push_back(adapter.ptr());
      }
      models.reference = std::make_shared<Ensemble>(Ensemble::of_one(r.model));
    }
    auto records = read_records(f->input, tok.get(), vocab, context);
    TokenScorer scorer(std::move(models), f->chunk);

    std::string out;
    ProgressBar progress("score", static_cast<int64_t>(records.size()), "records");
    const auto t0 = std::chrono::steady_clock::now();
    int64_t scored = 0;
    for (size_t r = 0; r < records.size(); ++r) {
      for (const auto& t : scorer.score(records[r].prompt, records[r].response, tok.get())) {
        ++scored;
        nlohmann::json j = {{"record", r}, {"index", t.index}, {"id", t.id}, {"text", t.text}};
        auto put = [&](const char* key, const std::optional<double>& v) {
          if (!v) return;
          if (!std::isfinite(*v))  // JSON would write null: a non-finite model is an error
            fail(f->input, ": record ", r + 1, " token ", t.index, ": ", key, " is not finite (",
                 *v, "); a model or adapter holds inf/NaN weights");
          j[key] = *v;
        };
        put("eu_true", t.eu_true);
        put("jsd", t.jsd);
        put("bias", t.bias);
        put("eu_hat", t.eu_hat);
        put("entropy_target", t.entropy_target);
        put("entropy_mix", t.entropy_mix);
        put("logprob", t.logprob);
        out += dump_json(j) + "\n";
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
