// Batched family forward vs one member vs K sequential member forwards, for K = 1, 3, 6, 10
// members with rank-16 noise on all seven linear module types:
//   decode:  batch 1, one new token per step on a warm cache of 64 tokens (time per step);
//   scoring: batch 8 x 128 tokens, no cache.
// Models: stories260K (the real GGUF from $DRAFTEU_SHARED or --model=PATH, else the preset shape)
// and the ~15M stories15m preset. Threads: --threads=N or $DRAFTEU_THREADS (default 1).
// --max_rows=N sets the family's member chunking; --profile=decode|score[15m] writes a trace.
// Printed at the end: decode K=6 / one member (goal <= 1.5x); scoring batched / sequential (the
// old <= 0.8x goal is retired: with all seven modules perturbed the members share no base
// computation); and scoring's achieved GFLOP/s (GFLOP counter: the forward's multiply-adds x 2)
// against this machine's FMA peak per thread, measured here with an AVX2 and an AVX-512 loop.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "family/low_rank_family.h"
#include "family/noise.h"
#include "model/checkpoint.h"

using namespace drafteu;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kWarm = 64, kScoreBatch = 8, kScoreLen = 128, kRank = 16;
const std::vector<int64_t> kMembers = {1, 3, 6, 10};

struct Setup {
  std::string name;
  LlamaForCausalLM model{nullptr};
  std::map<int64_t, std::unique_ptr<LowRankFamily>> families;
};
std::vector<std::unique_ptr<Setup>> g_setups;
int64_t g_max_rows = 0;  // --max_rows=N: LowRankFamily::set_max_rows (0: the default)

LlamaForCausalLM load_260k(const std::string& cli_path, std::string* label) {
  fs::path path = cli_path;
  if (path.empty()) {
    const char* shared = std::getenv("DRAFTEU_SHARED");
    fs::path base = shared && *shared ? fs::path(shared) : fs::path("../shared");
    path = base / "models/stories260K/stories260K.gguf";
  }
  if (fs::exists(path)) {
    *label = "stories260k";
    return load_model(path).model;
  }
  std::fprintf(stderr, "bench_family: %s not found, using the stories260k preset\n", path.c_str());
  *label = "stories260k-preset";
  torch::manual_seed(0);
  return LlamaForCausalLM(LlamaConfig::preset("stories260k"));
}

void add_setup(const std::string& name, LlamaForCausalLM model) {
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  auto s = std::make_unique<Setup>();
  s->name = name;
  s->model = model;
  NoiseConfig cfg = NoiseConfig::target_family(1234);
  cfg.rank = kRank;
  NoiseSampler sampler(*model, cfg);
  for (int64_t k : kMembers) {
    s->families[k] = std::make_unique<LowRankFamily>(model, sampler.members(k));
    if (g_max_rows > 0) s->families[k]->set_max_rows(g_max_rows);
  }
  g_setups.push_back(std::move(s));
}

// Floating-point operations of one forward over b x t tokens without a cache, per member: every
// linear layer and lm_head (2 per multiply-add), the members' rank-r terms and causal attention.
double forward_flops(const LlamaConfig& c, int64_t b, int64_t t, int64_t rank) {
  const double d = static_cast<double>(c.hidden_size), f = static_cast<double>(c.intermediate_size);
  const double q = static_cast<double>(c.num_attention_heads * c.head_dim);
  const double kv = static_cast<double>(c.num_key_value_heads * c.head_dim);
  const double linear = d * (q + 2 * kv) + q * d + 3 * d * f;
  const double low_rank =
      static_cast<double>(rank) * ((d + q) + 2 * (d + kv) + (q + d) + 2 * (d + f) + (f + d));
  const double rows = static_cast<double>(b * t);
  const double keys = static_cast<double>(t + 1) / 2;  // causal: the mean keys per query
  const double layers = static_cast<double>(c.num_hidden_layers);
  return 2 * rows *
         (layers * (linear + low_rank + 2 * q * keys) + d * static_cast<double>(c.vocab_size));
}

// Runs `block` (kRounds dependent FMAs on each of several independent accumulators) until
// `seconds` pass; returns GFLOP/s for `flops_per_block`.
constexpr int kRounds = 100000;
template <typename Block>
double fma_rate(double seconds, double flops_per_block, Block&& block) {
  int64_t blocks = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double dt = 0;
  while (dt < seconds) {
    block();
    ++blocks;
    dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return static_cast<double>(blocks) * flops_per_block / dt / 1e9;
}

// The FMA peak of one thread: independent accumulators, so the loop is bound by the FMA units.
__attribute__((target("avx2,fma"))) double peak_avx2(double seconds) {
  __m256 acc[10];
  for (auto& a : acc) a = _mm256_set1_ps(1.0f);
  const __m256 m = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
  const double r = fma_rate(
      seconds, 2.0 * kRounds * 10 * 8, [&]() __attribute__((target("avx2,fma"))) {
        for (int i = 0; i < kRounds; ++i)
          for (auto& a : acc) a = _mm256_fmadd_ps(a, m, c);
      });
  for (auto& a : acc) benchmark::DoNotOptimize(a);
  return r;
}

__attribute__((target("avx512f"))) double peak_avx512(double seconds) {
  __m512 acc[12];
  for (auto& a : acc) a = _mm512_set1_ps(1.0f);
  const __m512 m = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-4f);
  const double r = fma_rate(
      seconds, 2.0 * kRounds * 12 * 16, [&]() __attribute__((target("avx512f"))) {
        for (int i = 0; i < kRounds; ++i)
          for (auto& a : acc) a = _mm512_fmadd_ps(a, m, c);
      });
  for (auto& a : acc) benchmark::DoNotOptimize(a);
  return r;
}

torch::Tensor random_ids(int64_t vocab, int64_t b, int64_t t) {
  return torch::randint(3, vocab, {b, t}, torch::kInt64);
}

// mode: 0 batched family, 1 one member, 2 K sequential member forwards.
void bm_decode(benchmark::State& state, Setup* s, int64_t k, int mode) {
  torch::InferenceMode guard;
  auto& fam = *s->families.at(k);
  const int64_t vocab = fam.vocab_size();
  auto prompt = random_ids(vocab, 1, kWarm);
  auto tok = random_ids(vocab, 1, 1);
  if (mode == 0) {
    auto cache = fam.new_cache(kWarm + 8);
    fam.forward(prompt, &cache);
    for (auto _ : state) {
      benchmark::DoNotOptimize(fam.forward(tok, &cache));
      cache.truncate(kWarm);
    }
  } else {
    const int64_t n = mode == 1 ? 1 : k;
    std::vector<KVCache> caches;
    for (int64_t m = 0; m < n; ++m) {
      caches.push_back(s->model->new_cache(kWarm + 8));
      fam.forward_member(m, prompt, &caches.back());
    }
    for (auto _ : state) {
      for (int64_t m = 0; m < n; ++m) {
        benchmark::DoNotOptimize(fam.forward_member(m, tok, &caches[static_cast<size_t>(m)]));
        caches[static_cast<size_t>(m)].truncate(kWarm);
      }
    }
  }
}

void bm_score(benchmark::State& state, Setup* s, int64_t k, int mode) {
  torch::InferenceMode guard;
  auto& fam = *s->families.at(k);
  auto ids = random_ids(fam.vocab_size(), kScoreBatch, kScoreLen);
  auto run = [&] {
    if (mode == 0) {
      benchmark::DoNotOptimize(fam.forward(ids));
    } else {
      const int64_t n = mode == 1 ? 1 : k;
      for (int64_t m = 0; m < n; ++m) benchmark::DoNotOptimize(fam.forward_member(m, ids));
    }
  };
  run();  // warm-up: first-touch allocations are not what is measured
  for (auto _ : state) run();
  const double flops = static_cast<double>(mode == 1 ? 1 : k) *
                       forward_flops(s->model->config(), kScoreBatch, kScoreLen, kRank);
  state.counters["GFLOP"] =
      benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// Collects real and CPU times so the ratios can be printed after the console table (on a shared
// machine CPU time is the steadier of the two).
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  RatioReporter() : ConsoleReporter(OO_Tabular) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs) {
      if (r.error_occurred) continue;
      std::string name = r.benchmark_name();
      name = name.substr(0, name.find("/min_time:"));
      times[name] = {r.GetAdjustedRealTime(), r.GetAdjustedCPUTime()};
    }
    ConsoleReporter::ReportRuns(runs);
  }
  std::map<std::string, std::pair<double, double>> times;  // real, cpu
};

}  // namespace

int main(int argc, char** argv) {
  std::string model_path, profile;
  int threads = 1;
  if (const char* t = std::getenv("DRAFTEU_THREADS")) threads = std::atoi(t);
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--threads=", 0) == 0)
      threads = std::stoi(a.substr(10));
    else if (a.rfind("--model=", 0) == 0)
      model_path = a.substr(8);
    else if (a.rfind("--profile=", 0) == 0)
      profile = a.substr(10);
    else if (a.rfind("--max_rows=", 0) == 0)
      g_max_rows = std::stoll(a.substr(11));
    else
      rest.push_back(argv[i]);
  }
  int rest_argc = static_cast<int>(rest.size());
  torch::set_num_threads(std::max(1, threads));
  std::printf("torch threads: %d\n", torch::get_num_threads());

  std::string label;
  auto small = load_260k(model_path, &label);
  add_setup(label, small);
  torch::manual_seed(0);
  add_setup("stories15m", LlamaForCausalLM(LlamaConfig::preset("stories15m")));

  const char* mode_names[] = {"batched", "one_member", "sequential"};
  for (auto& s : g_setups) {
    for (int64_t k : kMembers) {
      for (int mode = 0; mode < 3; ++mode) {
        if (mode == 1 && k != 1 && k != 6) continue;  // one member is the same for every K
        const std::string tag = s->name + "/K:" + std::to_string(k) + "/" + mode_names[mode];
        benchmark::RegisterBenchmark(("decode/" + tag).c_str(), bm_decode, s.get(), k, mode)
            ->Unit(benchmark::kMillisecond)
            ->MinTime(0.3);
        benchmark::RegisterBenchmark(("score/" + tag).c_str(), bm_score, s.get(), k, mode)
            ->Unit(benchmark::kMillisecond)
            ->MinTime(0.3);
      }
    }
  }
  if (!profile.empty()) {  // --profile=decode|score[15m]: chrome trace, K=6 batched + one member
    torch::InferenceMode guard;
    auto& s = profile.ends_with("15m") ? *g_setups.back() : *g_setups.front();
    if (profile.ends_with("15m")) profile.resize(profile.size() - 3);
    auto& fam = *s.families.at(6);
    const bool decode = profile == "decode";
    auto ids = random_ids(fam.vocab_size(), decode ? 1 : kScoreBatch, decode ? kWarm : kScoreLen);
    auto tok = random_ids(fam.vocab_size(), 1, 1);
    auto cache = fam.new_cache(kWarm + 8);
    auto single = s.model->new_cache(kWarm + 8);
    if (decode) fam.forward(ids, &cache), fam.forward_member(0, ids, &single);
    const int reps = decode ? 20 : 2;
    {
      torch::autograd::profiler::RecordProfile prof("family_" + profile + "_batched.trace.json");
      for (int i = 0; i < reps; ++i) {
        if (decode)
          fam.forward(tok, &cache), cache.truncate(kWarm);
        else
          fam.forward(ids);
      }
    }
    {
      torch::autograd::profiler::RecordProfile prof("family_" + profile + "_member.trace.json");
      for (int i = 0; i < reps; ++i) {
        if (decode)
          fam.forward_member(0, tok, &single), single.truncate(kWarm);
        else
          fam.forward_member(0, ids);
      }
    }
    return 0;
  }
  // One thread's FMA peak, measured before the benchmarks (a shared machine lowers it too).
  const bool avx512 = __builtin_cpu_supports("avx512f");
  // The best of ten short trials: interference from other jobs only ever lowers a trial.
  double peak2 = 0, peak512 = 0;
  for (int i = 0; i < 10; ++i) {
    peak2 = std::max(peak2, peak_avx2(0.05));
    if (avx512) peak512 = std::max(peak512, peak_avx512(0.05));
  }
  const int threads_used = torch::get_num_threads();
  std::printf("FMA peak per thread (measured): AVX2 %.1f GFLOP/s, AVX-512 %s\n", peak2,
              avx512 ? (std::to_string(static_cast<int>(peak512)) + " GFLOP/s").c_str() : "n/a");
  benchmark::Initialize(&rest_argc, rest.data());
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  // a / b as "real (cpu)" ratios; "n/a" when either was not run.
  auto ratio = [&](const std::string& a, const std::string& b, double goal) {
    auto ia = reporter.times.find(a), ib = reporter.times.find(b);
    if (ia == reporter.times.end() || ib == reporter.times.end()) return std::string("n/a");
    const double real = ia->second.first / ib->second.first;
    const double cpu = ia->second.second / ib->second.second;
    char buf[96];
    std::snprintf(buf, sizeof buf, "%.2fx (cpu %.2fx)%s", real, cpu,
                  goal <= 0 ? "" : (std::max(real, cpu) <= goal ? " goal met" : " goal MISSED"));
    return std::string(buf);
  };
  std::printf(
      "\nratios, threads %d (goal: decode K=6/one member <= 1.5x; score batched/sequential and "
      "GFLOP/s against the peak, no goal)\n",
      torch::get_num_threads());
  for (auto& s : g_setups) {
    for (int64_t k : kMembers) {
      const std::string p = s->name + "/K:" + std::to_string(k) + "/";
      const std::string one = "decode/" + s->name + "/K:6/one_member";
      std::printf("%-18s K=%-2ld decode batched/one member %s; batched/sequential %s\n",
                  s->name.c_str(), static_cast<long>(k),
                  ratio("decode/" + p + "batched", one, k == 6 ? 1.5 : 0).c_str(),
                  ratio("decode/" + p + "batched", "decode/" + p + "sequential", 0).c_str());
      std::printf("%-18s K=%-2ld score  batched/sequential %s\n", s->name.c_str(),
                  static_cast<long>(k),
                  ratio("score/" + p + "batched", "score/" + p + "sequential", 0).c_str());
      auto it = reporter.times.find("score/" + p + "batched");
      if (it != reporter.times.end()) {
        const double gflops = static_cast<double>(k) *
                              forward_flops(s->model->config(), kScoreBatch, kScoreLen, kRank) /
                              (it->second.first * 1e-3) / 1e9;  // times are in ms
        std::printf(
            "%-18s K=%-2ld score  batched %.1f GFLOP/s = %.0f%% of the %d-thread AVX2 peak, %s\n",
            s->name.c_str(), static_cast<long>(k), gflops, 100 * gflops / (peak2 * threads_used),
            threads_used,
            avx512 ? (std::to_string(static_cast<int>(100 * gflops / (peak512 * threads_used))) +
                      "% of the AVX-512 peak")
                         .c_str()
                   : "no AVX-512");
      }
    }
  }
  benchmark::Shutdown();
  return 0;
}
