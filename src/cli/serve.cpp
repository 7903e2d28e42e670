// `drafteu serve` and the speculative-decoding flags `drafteu generate` shares with it.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "family/draft_source.h"
#include "model/checkpoint.h"
#include "model/generate.h"
#include "serve/server.h"
#include "serve/speculative.h"
#include "util/error.h"
#include "util/json.h"

namespace drafteu::cli {

struct SpeculativeFlags {
  DraftSpec spec;
  std::string drafts_csv;
  bool uncertainty = false;
  int64_t gamma = 4, gamma_min = 1, gamma_max = 8;
  bool fixed_gamma = false;
  std::string gamma_schedule = "heuristic";
  std::string proposer = "mixture";
  std::optional<double> eu_flag, eu_stop;
  std::string eu_stop_agg = "sum";
  int64_t eu_stop_min_tokens = 1;
  std::string calibration;
};

namespace {

// Finalises the flags and turns them into decoder options (sampling etc. are set by the caller).
serve::SpeculativeOptions decoder_options(SpeculativeFlags& f) {
  take_draft_paths(f.spec, f.drafts_csv);
  serve::SpeculativeOptions o;
  o.gamma.initial = f.gamma;
  o.gamma.min = std::min(f.gamma_min, f.gamma);
  o.gamma.max = std::max(f.gamma_max, f.gamma);
  o.gamma.set_rule(f.fixed_gamma ? "fixed" : f.gamma_schedule);
  o.proposer = serve::Proposer::parse(f.proposer);
  o.uncertainty = f.uncertainty;
  o.policy.flag_threshold = f.eu_flag;
  o.policy.stop_threshold = f.eu_stop;
  o.policy.stop_aggregation = uncertainty::parse_aggregation(f.eu_stop_agg);
  o.policy.stop_min_tokens = f.eu_stop_min_tokens;
  return o;
}

// ANSI colour by eu_hat: green (low), yellow, red (high); the flag threshold, when given, marks
// red.
const char* eu_colour(double eu, const std::optional<double>& flag) {
  if (flag ? eu > *flag : eu > 0.1) return "\x1b[31m";
  if (eu > (flag ? *flag / 10 : 0.01)) return "\x1b[33m";
  return "\x1b[32m";
}

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) {
  g_signal = sig;
}

}  // namespace

std::shared_ptr<SpeculativeFlags> add_speculative_flags(CLI::App* cmd, bool serving) {
  auto f = std::make_shared<SpeculativeFlags>();
  add_draft_flags(cmd, f->spec, f->drafts_csv);
  cmd->add_option("--reference-adapter", f->spec.reference_adapter,
                  "PEFT LoRA dir: reference p_ref = target + this adapter (p_mix)");
  cmd->add_option("--gamma", f->gamma, "draft tokens per round (initial)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--gamma-min", f->gamma_min, "adaptive gamma lower bound")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--gamma-max", f->gamma_max, "adaptive gamma upper bound")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--fixed-gamma", f->fixed_gamma, "keep gamma constant (= --gamma-schedule fixed)");
  cmd->add_option("--gamma-schedule", f->gamma_schedule,
                  "heuristic (+1 after full acceptance, -1 after a rejection) | cost-aware "
                  "(best gamma for the measured acceptance and draft/target cost) | fixed")
      ->check(CLI::IsMember({"heuristic", "cost-aware", "fixed"}));
  cmd->add_option("--proposer", f->proposer, "mixture | draft index 0, 1, ...");
  cmd->add_option("--eu-flag", f->eu_flag, "flag tokens with eu_hat above this")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--eu-stop", f->eu_stop, "stop when the sequence EU exceeds this")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--eu-stop-agg", f->eu_stop_agg, "sequence EU for --eu-stop: sum | mean | max");
  cmd->add_option("--eu-stop-min-tokens", f->eu_stop_min_tokens, "tokens before --eu-stop applies")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--calibration", f->calibration,
                  "logistic calibration JSON (as drafteu experiment writes it) -> p_error");
  if (serving)
    f->uncertainty = true;
  else
    cmd->add_flag("--uncertainty", f->uncertainty,
                  "per-token epistemic uncertainty from the drafts");
  return f;
}

bool speculative_requested(const SpeculativeFlags& f) {
  return !f.drafts_csv.empty() || !f.spec.draft.empty() || !f.spec.family_dir.empty();
}

void run_speculative_generate(SpeculativeFlags& f, const LoadedModel& m,
                              const std::vector<int64_t>& prompt, const GenerateOptions& go,
                              bool json) {
  auto o = decoder_options(f);
  o.sampling = go.sampling;
  o.max_new_tokens = go.max_new_tokens;
  o.seed = go.seed;
  o.stop_ids = go.stop_ids;
  std::optional<serve::Calibration> cal;
  if (!f.calibration.empty()) cal = serve::Calibration::load(f.calibration);
  auto models = load_drafts(f.spec, &m);
  serve::SpeculativeDecoder dec(m.model, models.drafts, models.reference);

  StreamDecoder stream(*m.tokenizer);
  const bool colour = isatty(1) && o.uncertainty;
  std::vector<double> eu;
  std::vector<bool> flags;
  auto r = dec.generate(prompt, o, [&](const serve::SpecToken& t) {
    const bool stop = std::find(o.stop_ids.begin(), o.stop_ids.end(), t.id) != o.stop_ids.end();
    if (t.uncertainty && !stop) {
      eu.push_back(t.uncertainty->eu_hat);
      flags.push_back(t.uncertainty->flagged);
    }
    if (json) {
      nlohmann::json j = {{"id", t.id},
                          {"text", m.tokenizer->decode({static_cast<int32_t>(t.id)})},
                          {"logprob", t.logprob}};
      if (t.uncertainty)
        j["uncertainty"] = {{"eu_hat", t.uncertainty->eu_hat},
                            {"jsd", t.uncertainty->jsd},
                            {"bias", t.uncertainty->bias},
                            {"entropy", t.uncertainty->entropy},
                            {"accepted", t.accepted}};
      std::cout << dump_json(j) << "\n";
    } else if (!stop) {
      auto piece = stream.push(static_cast<int32_t>(t.id));
      if (colour)
        std::cout << eu_colour(t.uncertainty->eu_hat, o.policy.flag_threshold) << piece
                  << "\x1b[0m";
      else
        std::cout << piece;
    }
    std::cout.flush();
    return true;
  });
  if (!json) std::cout << stream.flush() << "\n";
  std::cerr << "speculative: " << models.description << ", proposer " << o.proposer.name()
            << ", acceptance " << r.stats.acceptance_rate() << " (" << r.stats.accepted << "/"
            << r.stats.proposed << "), finish " << serve::to_string(r.finish);
  if (o.uncertainty) {
    auto s = serve::summarize(eu, flags, cal);
    std::cerr << ", eu_sum " << s.eu_sum << ", eu_mean " << s.eu_mean << ", eu_max " << s.eu_max
              << ", flagged spans " << s.flagged.size();
    if (s.p_error) std::cerr << ", p_error " << *s.p_error;
    std::cerr << ", uncertainty time " << 100 * r.stats.uncertainty_fraction() << "%";
  }
  std::cerr << "\n";
}

void add_serve_command(CLI::App& app, GlobalOptions&) {
  struct ServeFlags {
    std::string model, tokenizer, model_name;
    serve::ServerConfig config;
  };
  auto f = std::make_shared<ServeFlags>();
  auto* cmd =
      app.add_subcommand("serve", "OpenAI-compatible HTTP server with per-token uncertainty");
  cmd->add_option("--model", f->model, "target model: HF directory or .gguf file")->required();
  cmd->add_option("--tokenizer", f->tokenizer, "tokenizer.json, HF directory or .gguf");
  cmd->add_option("--model-name", f->model_name,
                  "name clients use (default: the model's file stem)");
  cmd->add_option("--host", f->config.host, "address to bind (default 127.0.0.1: loopback only)");
  cmd->add_option("--port", f->config.port, "port; 0 = any free port")->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", f->config.api_key, "require Authorization: Bearer KEY");
  cmd->add_option("--max-batch", f->config.max_batch, "requests decoded together (one forward)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-queue", f->config.max_queue, "requests waiting beyond the running ones")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-prompt-tokens", f->config.limits.max_prompt_tokens,
                  "longest prompt accepted")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-tokens-limit", f->config.limits.max_tokens_limit,
                  "largest max_tokens accepted")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-score-inputs", f->config.score_limits.max_inputs,
                  "/v1/score: largest batch of texts")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-score-tokens", f->config.score_limits.max_completion_tokens,
                  "/v1/score: longest completion (tokens)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-body-bytes", f->config.max_body_bytes, "largest request body")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-connections", f->config.http_threads,
                  "connections served at once (a thread each)")
      ->check(CLI::PositiveNumber);
  auto spec = add_speculative_flags(cmd, true);
  cmd->callback([f, spec] {
    if (!speculative_requested(*spec)) fail("serve: needs drafts (--drafts or --draft)");
    LoadOptions lo;
    if (!f->tokenizer.empty()) lo.tokenizer = f->tokenizer;
    LoadedModel m = load_model(f->model, lo);
    m.model->eval();
    if (!m.tokenizer) fail(f->model, ": the model has no tokenizer; pass --tokenizer");
    auto& cfg = f->config;
    cfg.defaults = decoder_options(*spec);
    cfg.defaults.stop_ids = m.generation.eos_token_ids;
    if (cfg.defaults.stop_ids.empty())
      for (auto id : m.tokenizer->eos_ids()) cfg.defaults.stop_ids.push_back(id);
    if (!spec->calibration.empty()) cfg.calibration = serve::Calibration::load(spec->calibration);
    cfg.model_name =
        f->model_name.empty() ? std::filesystem::path(f->model).stem().string() : f->model_name;
    auto models = load_drafts(spec->spec, &m);
    serve::SpeculativeDecoder dec(m.model, models.drafts, models.reference);
    serve::Server server(dec, m.tokenizer, cfg);
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    server.start();
    std::cout << "drafteu serve: model '" << cfg.model_name << "' (" << models.description
              << ") listening on http://" << cfg.host << ":" << server.port() << std::endl;
    while (g_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::cerr << "drafteu serve: signal " << g_signal << ", shutting down\n";
    server.stop();
  });
}

}  // namespace drafteu::cli
