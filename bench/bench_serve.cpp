// Per generated token, side by side in one run:
//   plain        target decoding (drafteu::generate)
//   spec1        speculative decoding with one draft, no uncertainty
//   specK        speculative decoding with K drafts (one batched family pass), no uncertainty
//   specK_unc    the same with per-token uncertainty records (what `serve` does)
//   specK_unc_adapter  ... with the reference p_ref = target + a LoRA adapter (2-member target)
//   tokur        TokUR-style uncertainty: a 10-member tokur noise family of the target forwarded
//                every token (10 target passes, batched), EU = mean_m KL(p_m || p_bar)
//   tokur_sequential  the same as 10 separate target passes (the paper's accounting; 1 run)
// Setups: stories260K (the real GGUF; drafts = lora-noise members of itself, sigma 0.05), and
// stories15m and stories110m (random init) with a 2-layer dim-64 draft of the same vocabulary
// (random init: acceptance comes from two near-flat distributions, the numbers are for timing).
// Only the 110m setup has the paper's proportions (a target tens of times the draft's cost);
// at 15m the three drafts' 32k-vocabulary heads cost about as much as the target itself.
// --pair=DIR adds a trained pair: DIR/target and DIR/draft as `drafteu testbed` writes them (the
// draft distilled from the target), prompted with DIR/test.jsonl's questions in the testbed's
// format and stopped at EOS: the setup where speculative decoding should pay.
// --pair-widen=H (with --pair) adds "pair-wide": DIR's target grown to hidden size H by
// eval::widen_llama (function-preserving: zero writes into the new residual dims, dense random
// reads, rescaled norms), so it computes the trained target's distribution at a memory-bound
// size (H 1536 on the 96-wide testbed target: ~87M parameters) and DIR's draft stays a trained
// draft of it. H must be a multiple of the target's head_dim. Run only it with
// --benchmark_filter=pair-wide; its parameter counts and the draft/target ratio print at start.
// --distill-draft=STEPS adds "stories110m-distilled": the random 110M target with a draft (hidden
// 128, 2 layers, same 32k vocabulary) distilled from it by eval::pretrain's forward KL on the
// target's logits over sequences the target itself samples (temperature 1, seeded, the bench's
// prompt). The draft is cached under --distill-cache=DIR (default: cache/ beside this binary) in a
// directory keyed by its settings and checked against the target's weights, so a rerun reuses it.
// --distill-hidden=H sets the draft's width (default 128). Distillation runs on
// --distill-threads=N (default 2); the decode cost of a draft step against a
// target step is printed.
// Sampling at temperature 1.
// Printed at the end: specK_unc / specK and / spec1 (goal <= 1.10), specK_unc / tokur (goal
// <= 0.33), acceptance rates and the uncertainty time fraction the decoder measured itself.
// Threads: --threads=N or $DRAFTEU_THREADS (default 1). Tokens per run: --tokens=N (default 64);
// runs per benchmark: --iterations=N (default 3), run i on prompt i mod the setup's prompts.
// γ: --gamma-schedule=heuristic|cost-aware|fixed (default heuristic, as serve).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/testbed_models.h"
#include "family/lora.h"
#include "family/low_rank_family.h"
#include "family/noise.h"
#include "model/checkpoint.h"
#include "model/generate.h"
#include "model/generate_batch.h"
#include "model/runtime.h"
#include "model/tokenizer/tokenizer.h"
#include "serve/speculative.h"
#include "uncertainty/uncertainty.h"
#include "util/file.h"
#include "util/json.h"

using namespace drafteu;
namespace fs = std::filesystem;

namespace {

int64_t g_tokens = 64;
int g_iterations = 3;
std::string g_schedule = "heuristic";
constexpr int64_t kK = 3;

struct Setup {
  std::string name;
  LlamaForCausalLM target{nullptr}, draft{nullptr};
  std::shared_ptr<Family> drafts1, draftsK;
  std::shared_ptr<LowRankFamily> tokur;
  MemberDeltas adapter;
  std::vector<std::vector<int64_t>> prompts;
  std::vector<int64_t> stop_ids;
  const std::vector<int64_t>& prompt(int64_t run) const {
    return prompts[static_cast<size_t>(run) % prompts.size()];
  }
};
std::vector<std::unique_ptr<Setup>> g_setups;

struct Measured {
  double s_per_token = 0, acceptance = 0, unc_fraction = 0;
};
std::map<std::string, Measured> g_results;

LlamaForCausalLM frozen(LlamaForCausalLM m) {
  m->eval();
  for (auto& p : m->parameters()) p.set_requires_grad(false);
  return m;
}

Setup& add_setup(const std::string& name, LlamaForCausalLM target, LlamaForCausalLM draft) {
  auto s = std::make_unique<Setup>();
  s->name = name;
  s->target = frozen(target);
  s->draft = frozen(draft);
  NoiseConfig cfg = NoiseConfig::target_family(7);
  cfg.sigma = 0.05;
  NoiseSampler drafts(*s->draft, cfg);
  s->drafts1 = std::make_shared<LowRankFamily>(s->draft, drafts.members(1));
  s->draftsK = std::make_shared<LowRankFamily>(s->draft, drafts.members(kK));
  NoiseSampler tokur(*s->target, NoiseConfig::tokur(11));
  s->tokur = std::make_shared<LowRankFamily>(s->target, tokur.members(10));
  torch::manual_seed(5);
  LoraAdapter adapter(*s->target, LoraConfig{});
  {
    torch::NoGradGuard ng;
    for (auto& [n, l] : adapter->layers()) l->lora_B.normal_(0.0, 0.05);
  }
  s->adapter = adapter->to_member();
  s->prompts = {{1, 403, 407, 261, 378}};  // BOS + a few ids valid in both vocabularies
  g_setups.push_back(std::move(s));
  return *g_setups.back();
}

// A trained pair from `drafteu testbed`: its first test questions as prompts, EOS as the stop.
// widen > 0 adds "pair-wide": the target grown to hidden size `widen` by eval::widen_llama (the
// same function, memory-bound) with the same draft, prompts and stop, and returns it.
Setup* add_pair(const fs::path& dir, int64_t widen) {
  auto target = load_model(dir / "target");
  const Tokenizer& tok = *target.tokenizer;
  std::vector<std::vector<int64_t>> prompts;
  std::ifstream in(dir / "test.jsonl");
  std::string line;
  while (prompts.size() < 16 && std::getline(in, line)) {
    const auto q = nlohmann::json::parse(line).at("question").get<std::string>();
    const auto ids = tok.encode("Question: " + q + "\nAnswer:", tok.bos_id().has_value());
    prompts.emplace_back(ids.begin(), ids.end());
  }
  if (prompts.empty()) throw std::runtime_error("bench_serve: no questions in " + dir.string());
  // A draft loaded per setup, so the two setups share no modules.
  auto add = [&](const std::string& name, LlamaForCausalLM t) -> Setup& {
    auto& s = add_setup(name, t, load_model(dir / "draft").model);
    s.prompts = prompts;
    for (auto id : tok.eos_ids()) s.stop_ids.push_back(id);
    return s;
  };
  add("pair", target.model);
  if (widen <= 0) return nullptr;
  auto& s =
      add("pair-wide", eval::widen_llama(*target.model, widen, 7, "bench_serve --pair-widen"));
  const auto& tc = s.target->config();
  const auto& dc = s.draft->config();
  const auto mb = [](const LlamaConfig& c) {
    return 4e-6 * static_cast<double>(c.num_parameters());
  };
  std::printf(
      "pair-wide: target hidden %lld -> %lld (%lld heads, intermediate %lld): %lld parameters "
      "(%.1f MB float32); draft %lld parameters (%.1f MB); draft/target parameters %.4f\n",
      static_cast<long long>(target.model->config().hidden_size),
      static_cast<long long>(tc.hidden_size), static_cast<long long>(tc.num_attention_heads),
      static_cast<long long>(tc.intermediate_size), static_cast<long long>(tc.num_parameters()),
      mb(tc), static_cast<long long>(dc.num_parameters()), mb(dc),
      static_cast<double>(dc.num_parameters()) / static_cast<double>(tc.num_parameters()));
  return &s;
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The draft --distill-draft builds: its shape and the distillation data, all in the cache key.
struct DistillSettings {
  eval::ModelShape shape{128, 384, 2, 4, 4};
  int64_t steps = 0, sequences = 256, length = 48, batch = 8;
  double lr = 3e-3;
  uint64_t seed = 1;
  int threads = 2;
  fs::path cache;
  std::string key() const {
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  "distilled-r110m-h%lld-i%lld-l%lld-n%lld-t%lld-b%lld-s%lld-lr%g-seed%llu",
                  static_cast<long long>(shape.hidden), static_cast<long long>(shape.intermediate),
                  static_cast<long long>(shape.layers), static_cast<long long>(sequences),
                  static_cast<long long>(length), static_cast<long long>(batch),
                  static_cast<long long>(steps), lr, static_cast<unsigned long long>(seed));
    return buf;
  }
};

// A few numbers that change when the target's weights do (a cached draft of another target is
// rebuilt rather than reused).
std::string fingerprint(LlamaForCausalLMImpl& m) {
  torch::NoGradGuard ng;
  double a = 0, b = 0;
  for (auto& p : m.parameters()) {
    a += p.sum().item<double>();
    b += p.abs().sum().item<double>();
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6e/%.6e", a, b);
  return buf;
}

// Distils (or loads from the cache) a small draft of `target`: the target samples `sequences`
// continuations of `prompt` (seeded, temperature 1), then eval::pretrain trains the draft on the
// forward KL to the target's logits at the sampled tokens.
LlamaForCausalLM distilled_draft(LlamaForCausalLM target, const std::vector<int64_t>& prompt,
                                 const DistillSettings& d) {
  const fs::path dir = d.cache / d.key();
  const std::string print = fingerprint(*target);
  if (fs::exists(dir / "distill.json")) {
    const auto info = read_json_file(dir / "distill.json");
    if (info.value("target", std::string()) == print) {
      std::printf("distilled draft: cached %s (distilled in %.1f s)\n", dir.c_str(),
                  info.value("seconds", 0.0));
      return load_model(dir).model;
    }
    std::printf("distilled draft: %s is of another target, rebuilding\n", dir.c_str());
  }
  const int saved_threads = torch::get_num_threads();
  torch::set_num_threads(std::max(1, d.threads));
  const double t0 = now();
  target->eval();
  BatchGenerateOptions g;
  g.max_new_tokens = d.length;
  std::vector<std::vector<int64_t>> seqs;
  constexpr int64_t kChunk = 64;  // rows sampled together (one shared KV cache)
  for (int64_t start = 0; start < d.sequences; start += kChunk) {
    const int64_t n = std::min(kChunk, d.sequences - start);
    std::vector<std::vector<int64_t>> prompts(static_cast<size_t>(n), prompt);
    std::vector<uint64_t> seeds;
    for (int64_t i = 0; i < n; ++i) seeds.push_back(1000 + static_cast<uint64_t>(start + i));
    torch::NoGradGuard ng;
    auto out = generate_batch(*target, prompts, seeds, g);
    for (auto& o : out) {
      seqs.push_back(prompt);
      seqs.back().insert(seqs.back().end(), o.begin(), o.end());
    }
  }
  const double t_sample = now() - t0;
  std::printf("distilled draft: sampled %lld sequences of %lld tokens from the target in %.1f s\n",
              static_cast<long long>(d.sequences), static_cast<long long>(d.length), t_sample);
  const auto& tc = target->config();
  auto config = eval::testbed_config(d.shape, tc.vocab_size, tc.max_position_embeddings);
  auto draft = eval::init_model(config, d.seed);
  eval::PretrainOptions o;
  o.steps = d.steps, o.batch_size = d.batch, o.lr = d.lr, o.seed = d.seed;
  o.warmup = std::min<int64_t>(20, d.steps / 10);
  o.log_every = std::max<int64_t>(1, d.steps / 10);
  o.answer_only = false;
  // The loss counts the sampled tokens (the prompt is the same in every sequence).
  const std::vector<size_t> loss_from(seqs.size(), prompt.size());
  auto stats = eval::pretrain(*draft, seqs, o, &std::cout, "distill", loss_from,
                              eval::PretrainTeacher{target.get()});
  const double seconds = now() - t0;
  torch::set_num_threads(saved_threads);
  std::printf("distilled draft: %lld steps in %.1f s (KL %.4f -> %.4f); total %.1f s\n",
              static_cast<long long>(d.steps), stats.seconds, stats.losses.front(),
              stats.losses.back(), seconds);
  LoadedModel m;
  m.model = draft;
  m.generation.bos_token_id = 1;
  m.generation.eos_token_ids = {2};
  const fs::path tmp = d.cache / (d.key() + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  save_hf_model(m, tmp);
  nlohmann::json info = {{"target", print},
                         {"seconds", seconds},
                         {"sample_seconds", t_sample},
                         {"train_seconds", stats.seconds},
                         {"kl_first", stats.losses.front()},
                         {"kl_last", stats.losses.back()}};
  write_file_atomic(tmp / "distill.json", info.dump(2) + "\n");
  fs::remove_all(dir);
  fs::rename(tmp, dir);
  return draft;
}

// Per-token decode time of `m` alone (plain sampling, after a warm-up run).
double decode_ms(LlamaForCausalLMImpl& m, const std::vector<int64_t>& prompt, int64_t tokens) {
  GenerateOptions o;
  o.max_new_tokens = 8;
  generate(m, prompt, o);
  o.max_new_tokens = tokens;
  const double t0 = now();
  const auto n = generate(m, prompt, o).size();
  return 1e3 * (now() - t0) / static_cast<double>(std::max<size_t>(n, 1));
}

// The decode cost of a setup's draft against its target's, per token, on its first prompt.
void print_decode_cost(const char* label, Setup& s) {
  const double dm = decode_ms(*s.draft, s.prompts.front(), 64);
  const double tm = decode_ms(*s.target, s.prompts.front(), 16);
  std::printf(
      "%s: decode %.3f ms/token, target %.3f ms/token, draft/target cost %.3f (%d thread(s))\n",
      label, dm, tm, dm / tm, torch::get_num_threads());
}

void record(benchmark::State& state, const std::string& key, double seconds, int64_t tokens,
            double acceptance = 0, double unc = 0) {
  Measured m{seconds / static_cast<double>(tokens), acceptance, unc};
  g_results[key] = m;
  state.counters["ms_per_token"] = 1e3 * m.s_per_token;
  if (acceptance > 0) state.counters["acceptance"] = acceptance;
  if (unc > 0) state.counters["unc_fraction"] = unc;
}

void bm_plain(benchmark::State& state, Setup* s) {
  GenerateOptions o;
  o.max_new_tokens = g_tokens;
  o.stop_ids = s->stop_ids;
  double t = 0;
  int64_t n = 0, run = 0;
  for (auto _ : state) {
    o.seed = static_cast<uint64_t>(run);
    double t0 = now();
    n += static_cast<int64_t>(generate(*s->target, s->prompt(run++), o).size());
    t += now() - t0;
  }
  record(state, s->name + "/plain", t, n);
}

// mode: 0 spec1, 1 specK, 2 specK_unc, 3 specK_unc_adapter
void bm_spec(benchmark::State& state, Setup* s, int mode) {
  serve::SpeculativeDecoder dec(s->target, mode == 0 ? s->drafts1 : s->draftsK,
                                mode == 3 ? std::optional<MemberDeltas>(s->adapter) : std::nullopt);
  serve::SpeculativeOptions o;
  o.max_new_tokens = g_tokens;
  o.stop_ids = s->stop_ids;
  o.uncertainty = mode >= 2;
  o.gamma.set_rule(g_schedule);
  double t = 0, unc = 0, draft = 0, verify = 0, prefill = 0;
  int64_t n = 0, proposed = 0, accepted = 0;
  uint64_t seed = 0;
  for (auto _ : state) {
    const auto& prompt = s->prompt(static_cast<int64_t>(seed));
    o.seed = seed++;
    double t0 = now();
    auto r = dec.generate(prompt, o);
    t += now() - t0;
    n += static_cast<int64_t>(r.tokens.size());
    proposed += r.stats.proposed, accepted += r.stats.accepted;
    unc += r.stats.uncertainty_s, draft += r.stats.draft_s, verify += r.stats.target_s;
    prefill += r.stats.prefill_s;
  }
  static const char* names[] = {"spec1", "specK", "specK_unc", "specK_unc_adapter"};
  record(state, s->name + "/" + names[mode], t, n,
         proposed ? static_cast<double>(accepted) / static_cast<double>(proposed) : 0, unc / t);
  // Where a token's time goes: the prompt's prefill (target and drafts), draft forwards, the
  // target's verification, the EU records, and the rest (sampling, cache bookkeeping, emission),
  // in ms per generated token.
  const double per = 1e3 / static_cast<double>(std::max<int64_t>(n, 1));
  state.counters["draft_ms"] = draft * per;
  state.counters["verify_ms"] = verify * per;
  state.counters["eu_ms"] = unc * per;
  state.counters["prefill_ms"] = prefill * per;
  state.counters["other_ms"] = std::max(0.0, t - prefill - draft - verify - unc) * per;
}

// TokUR: every token, the 10-member target family forwards on its cache; the next token is sampled
// from the family mean and the EU computed from all members. `batched`: one batched family pass
// (the weights are read once for all members); else the paper's 10 separate target passes.
void bm_tokur(benchmark::State& state, Setup* s, bool batched) {
  torch::NoGradGuard ng;
  auto& fam = *s->tokur;
  double t = 0;
  int64_t n = 0;
  for (auto _ : state) {
    const auto& prompt = s->prompt(n / g_tokens);
    const auto capacity = static_cast<int64_t>(prompt.size()) + g_tokens;
    Sampler sampler(static_cast<uint64_t>(n));
    double t0 = now();
    auto cache = fam.new_cache(capacity);
    std::vector<KVCache> member_caches;
    for (int64_t k = 0; k < fam.size(); ++k)
      member_caches.push_back(fam.base()->new_cache(capacity));
    auto ids = torch::tensor(prompt).unsqueeze(0);
    for (int64_t i = 0; i < g_tokens; ++i) {
      torch::Tensor logits;
      if (batched) {
        logits = fam.forward(ids, &cache, {}, true).select(1, 0).select(1, 0);
      } else {
        std::vector<torch::Tensor> rows;
        for (int64_t k = 0; k < fam.size(); ++k)
          rows.push_back(
              fam.forward_member(k, ids, &member_caches[static_cast<size_t>(k)], {}, true)[0][0]);
        logits = torch::stack(rows);
      }
      auto logp = torch::log_softmax(logits, -1);
      auto eu = uncertainty::epistemic_uncertainty(logp);
      benchmark::DoNotOptimize(eu);
      auto mean = torch::logsumexp(logp, 0) - std::log(10.0);
      ids = torch::full({1, 1}, sampler.sample(mean.exp()), torch::kInt64);
    }
    t += now() - t0;
    n += g_tokens;
  }
  record(state, s->name + (batched ? "/tokur" : "/tokur_sequential"), t, n);
}

double ratio(const std::string& a, const std::string& b) {
  if (!g_results.count(a) || !g_results.count(b)) return 0;
  return g_results[a].s_per_token / g_results[b].s_per_token;
}

}  // namespace

int main(int argc, char** argv) {
  ensure_blas_kernels(argv);  // OpenBLAS's right kernels for this CPU (model/runtime)
  int threads = 1;
  std::string pair;
  int64_t pair_widen = 0;
  DistillSettings distill;
  distill.cache = fs::absolute(argv[0]).parent_path() / "cache";
  if (const char* t = std::getenv("DRAFTEU_THREADS")) threads = std::atoi(t);
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--threads=", 0) == 0)
      threads = std::stoi(a.substr(10));
    else if (a.rfind("--tokens=", 0) == 0)
      g_tokens = std::stoll(a.substr(9));
    else if (a.rfind("--iterations=", 0) == 0)
      g_iterations = std::stoi(a.substr(13));
    else if (a.rfind("--pair=", 0) == 0)
      pair = a.substr(7);
    else if (a.rfind("--pair-widen=", 0) == 0)
      pair_widen = std::stoll(a.substr(13));
    else if (a.rfind("--gamma-schedule=", 0) == 0)
      g_schedule = a.substr(17);
    else if (a.rfind("--distill-draft=", 0) == 0)
      distill.steps = std::stoll(a.substr(16));
    else if (a.rfind("--distill-cache=", 0) == 0)
      distill.cache = a.substr(16);
    else if (a.rfind("--distill-hidden=", 0) == 0) {
      const int64_t h = std::stoll(a.substr(17));  // 2 layers, 3h-wide MLP, 32-wide heads
      distill.shape = {h, 3 * h, 2, h / 32, h / 32};
    } else if (a.rfind("--distill-threads=", 0) == 0)
      distill.threads = std::stoi(a.substr(18));
    else
      rest.push_back(argv[i]);
  }
  torch::set_num_threads(std::max(1, threads));
  std::printf("torch threads: %d, tokens per run: %lld, gamma schedule: %s\n",
              torch::get_num_threads(), static_cast<long long>(g_tokens), g_schedule.c_str());

  const char* shared = std::getenv("DRAFTEU_SHARED");
  fs::path gguf =
      fs::path(shared && *shared ? shared : "../shared") / "models/stories260K/stories260K.gguf";
  if (fs::exists(gguf)) {
    auto m = load_model(gguf).model;
    add_setup("stories260k", m, m);
  } else {
    std::fprintf(stderr, "bench_serve: %s not found, using the stories260k preset\n", gguf.c_str());
    torch::manual_seed(0);
    LlamaForCausalLM m(LlamaConfig::preset("stories260k"));
    add_setup("stories260k-preset", m, m);
  }
  torch::manual_seed(0);
  LlamaForCausalLM big(LlamaConfig::preset("stories15m"));
  LlamaConfig small_cfg = LlamaConfig::preset("stories15m");
  small_cfg.hidden_size = 64, small_cfg.intermediate_size = 172, small_cfg.num_hidden_layers = 2;
  small_cfg.num_attention_heads = 4, small_cfg.num_key_value_heads = 2, small_cfg.head_dim = 16;
  LlamaForCausalLM small(small_cfg);
  add_setup("stories15m-random", big, small);
  // The paper's regime: a target much larger than its drafts (here ~40x the draft's MACs).
  torch::manual_seed(0);
  LlamaForCausalLM huge(LlamaConfig::preset("stories110m"));
  LlamaForCausalLM small2(small_cfg);
  const auto huge_prompt = add_setup("stories110m-random", huge, small2).prompts.front();
  if (pair_widen > 0 && pair.empty()) {
    std::fprintf(stderr, "bench_serve: --pair-widen needs --pair=DIR\n");
    return 2;
  }
  if (!pair.empty()) {
    if (Setup* wide = add_pair(pair, pair_widen)) print_decode_cost("pair-wide draft", *wide);
  }
  if (distill.steps > 0) {
    auto draft = distilled_draft(huge, huge_prompt, distill);
    print_decode_cost("distilled draft", add_setup("stories110m-distilled", huge, draft));
  }

  for (auto& s : g_setups) {
    auto reg = [&](const std::string& name, auto fn) {
      benchmark::RegisterBenchmark((s->name + "/" + name).c_str(), fn)
          ->Unit(benchmark::kMillisecond)
          ->Iterations(g_iterations);
    };
    Setup* p = s.get();
    reg("plain", [p](benchmark::State& st) { bm_plain(st, p); });
    reg("spec1", [p](benchmark::State& st) { bm_spec(st, p, 0); });
    reg("specK", [p](benchmark::State& st) { bm_spec(st, p, 1); });
    reg("specK_unc", [p](benchmark::State& st) { bm_spec(st, p, 2); });
    reg("specK_unc_adapter", [p](benchmark::State& st) { bm_spec(st, p, 3); });
    reg("tokur", [p](benchmark::State& st) { bm_tokur(st, p, true); });
    benchmark::RegisterBenchmark((s->name + "/tokur_sequential").c_str(),
                                 [p](benchmark::State& st) { bm_tokur(st, p, false); })
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  std::printf(
      "\nK = %lld drafts; per-token ratios (goal: spec+unc / spec <= 1.10, spec+unc / TokUR <= "
      "0.33)\n",
      static_cast<long long>(kK));
  for (auto& s : g_setups) {
    const std::string n = s->name + "/";
    if (!g_results.count(n + "plain")) continue;  // filtered out
    std::printf("%s: ms/token plain %.3f spec1 %.3f specK %.3f specK_unc %.3f tokur %.3f\n",
                s->name.c_str(), 1e3 * g_results[n + "plain"].s_per_token,
                1e3 * g_results[n + "spec1"].s_per_token, 1e3 * g_results[n + "specK"].s_per_token,
                1e3 * g_results[n + "specK_unc"].s_per_token,
                1e3 * g_results[n + "tokur"].s_per_token);
    std::printf(
        "  specK_unc/specK %.3f  specK_unc/spec1 %.3f  specK_unc/tokur %.3f  specK/plain %.3f\n",
        ratio(n + "specK_unc", n + "specK"), ratio(n + "specK_unc", n + "spec1"),
        ratio(n + "specK_unc", n + "tokur"), ratio(n + "specK", n + "plain"));
    std::printf("  adapter reference: specK_unc_adapter/specK_unc %.3f\n",
                ratio(n + "specK_unc_adapter", n + "specK_unc"));
    std::printf(
        "  TokUR as 10 separate passes (the paper's cost): %.3f ms/token, specK_unc/it %.3f\n",
        1e3 * g_results[n + "tokur_sequential"].s_per_token,
        ratio(n + "specK_unc", n + "tokur_sequential"));
    std::printf(
        "  acceptance spec1 %.3f specK %.3f; uncertainty time fraction (decoder-measured) %.3f; "
        "draft/target weights read per step %.3f\n",
        g_results[n + "spec1"].acceptance, g_results[n + "specK"].acceptance,
        g_results[n + "specK_unc"].unc_fraction,
        serve::SpeculativeDecoder(s->target, s->draftsK).draft_cost_ratio());
    std::printf("  speedup plain/specK_unc %.3f at specK_unc acceptance %.3f\n",
                ratio(n + "plain", n + "specK_unc"), g_results[n + "specK_unc"].acceptance);
  }
  return 0;
}
