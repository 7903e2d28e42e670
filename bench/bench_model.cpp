// Runtime speed: prefill (128 tokens) and incremental decode (batch 1 and 8), at 1 and 2
// threads, with a `tok/s` counter on every row.
//   bench_model [--model FILE] [--reference-path] [--benchmark_format=json]
//   [--benchmark_filter=...]
// --model: a GGUF file or HF directory; default: the built-in shapes, stories260K (the real
// model under $DRAFTEU_SHARED when present, else its shape) and the ~15M shape (dim 288, 6
// layers, vocab 32000). --reference-path: the module path instead of the fused fast path.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "model/fast_forward.h"
#include "model/runtime.h"

namespace {
using namespace drafteu;

struct Bench {
  std::string name;
  LlamaForCausalLM model{nullptr};
};

void prefill128(benchmark::State& state, LlamaForCausalLM m) {
  torch::NoGradGuard ng;
  torch::set_num_threads(static_cast<int>(state.range(1)));
  const int64_t batch = state.range(0), T = 128;
  auto ids = torch::randint(3, m->config().vocab_size, {batch, T}, torch::kInt64);
  for (auto _ : state) {
    auto cache = m->new_cache(T);
    benchmark::DoNotOptimize(m->forward(ids, &cache, {}, /*last_only=*/true));
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(batch * T),
                                               benchmark::Counter::kIsIterationInvariantRate);
}

void decode(benchmark::State& state, LlamaForCausalLM m) {
  torch::NoGradGuard ng;
  torch::set_num_threads(static_cast<int>(state.range(1)));
  const int64_t batch = state.range(0), prompt = 16, steps = 64;
  auto ids = torch::randint(3, m->config().vocab_size, {batch, prompt}, torch::kInt64);
  for (auto _ : state) {
    state.PauseTiming();
    auto cache = m->new_cache(prompt + steps);
    auto logits = m->forward(ids, &cache, {}, true);
    state.ResumeTiming();
    for (int64_t s = 0; s < steps; ++s) {
      auto next = logits.argmax(-1);  // [B, 1]
      logits = m->forward(next, &cache, {}, true);
    }
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(batch * steps),
                                               benchmark::Counter::kIsIterationInvariantRate);
}

std::vector<Bench> builtin_models() {
  std::vector<Bench> out;
  const char* shared = std::getenv("DRAFTEU_SHARED");
  auto gguf =
      std::filesystem::path(shared ? shared : "../shared") / "models/stories260K/stories260K.gguf";
  if (std::filesystem::exists(gguf)) {
    out.push_back({"stories260K", load_model(gguf).model});
  } else {
    torch::manual_seed(0);
    out.push_back({"stories260K-shape", LlamaForCausalLM(LlamaConfig::preset("stories260k"))});
  }
  torch::manual_seed(0);
  out.push_back({"15M", LlamaForCausalLM(LlamaConfig::preset("stories15m"))});
  return out;
}

// Removes "--flag VALUE" / "--flag=VALUE" from argv; returns VALUE ("" if absent).
std::string take_option(int& argc, char** argv, const char* flag, bool has_value) {
  const size_t n = std::strlen(flag);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    int used = 0;
    std::string value;
    if (a == flag) {
      used = has_value ? 2 : 1;
      if (has_value && i + 1 >= argc) {
        std::cerr << "bench_model: " << flag << " needs a value\n";
        std::exit(2);
      }
      value = has_value ? argv[i + 1] : "1";
    } else if (has_value && a.compare(0, n + 1, std::string(flag) + "=") == 0) {
      used = 1;
      value = a.substr(n + 1);
    }
    if (used) {
      for (int j = i; j + used < argc; ++j) argv[j] = argv[j + used];
      argc -= used;
      return value;
    }
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  ensure_blas_kernels(argv);
  const std::string model_path = take_option(argc, argv, "--model", true);
  const std::string preset = take_option(argc, argv, "--preset", true);
  const bool reference = !take_option(argc, argv, "--reference-path", false).empty();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;

  set_fast_forward_enabled(!reference);
  std::vector<Bench> models;
  try {
    torch::NoGradGuard ng;
    if (!preset.empty()) {
      torch::manual_seed(0);
      models.push_back({preset, LlamaForCausalLM(LlamaConfig::preset(preset))});
    } else if (model_path.empty()) {
      models = builtin_models();
    } else {
      models.push_back(
          {std::filesystem::path(model_path).filename().string(), load_model(model_path).model});
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_model: cannot load "
              << (preset.empty() ? "--model " + model_path : "--preset " + preset) << ": "
              << e.what() << "\n";
    return 1;
  }
  for (auto& b : models) {
    b.model->eval();
    const std::string tag = b.name + (reference ? "/reference" : "");
    auto* p = benchmark::RegisterBenchmark(("Prefill128/" + tag).c_str(), prefill128, b.model);
    auto* d = benchmark::RegisterBenchmark(("Decode/" + tag).c_str(), decode, b.model);
    for (int threads : {1, 2}) p->Args({1, threads});
    for (int batch : {1, 8})
      for (int threads : {1, 2}) d->Args({batch, threads});
    for (auto* r : {p, d})
      r->ArgNames({"batch", "threads"})->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
