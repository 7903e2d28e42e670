// Runtime speed: prefill (128 tokens) and incremental decode, batch 1 and 8, 1 and 2 threads,
// for the real stories260K (or its shape) and the ~15M config (dim 288, 6 layers, vocab 32000).
//   bench_model [--benchmark_filter=...]   (env DRAFTEU_SHARED locates ../shared)
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>

#include "model/checkpoint.h"

namespace {
using namespace drafteu;

LlamaForCausalLM& model_for(int which) {
  static LlamaForCausalLM models[2] = {nullptr, nullptr};
  if (!models[which]) {
    torch::NoGradGuard ng;
    if (which == 0) {
      const char* shared = std::getenv("DRAFTEU_SHARED");
      std::filesystem::path gguf = std::filesystem::path(shared ? shared : "../shared") /
                                   "models/stories260K/stories260K.gguf";
      if (std::filesystem::exists(gguf)) {
        models[0] = load_model(gguf).model;
      } else {
        torch::manual_seed(0);
        models[0] = LlamaForCausalLM(LlamaConfig::preset("stories260k"));
      }
    } else {
      torch::manual_seed(0);
      models[1] = LlamaForCausalLM(LlamaConfig::preset("stories15m"));
    }
    models[which]->eval();
  }
  return models[which];
}

const char* kNames[2] = {"stories260K", "15M"};

// Args: model (0 = stories260K, 1 = 15M), batch, threads.
void BM_Prefill128(benchmark::State& state) {
  torch::NoGradGuard ng;
  torch::set_num_threads(static_cast<int>(state.range(2)));
  auto& m = model_for(static_cast<int>(state.range(0)));
  const int64_t batch = state.range(1), T = 128;
  auto ids = torch::randint(3, m->config().vocab_size, {batch, T}, torch::kInt64);
  for (auto _ : state) {
    auto cache = m->new_cache(T);
    benchmark::DoNotOptimize(m->forward(ids, &cache, {}, /*last_only=*/true));
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(batch * T),
                                               benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(kNames[state.range(0)]);
}

void BM_Decode(benchmark::State& state) {
  torch::NoGradGuard ng;
  torch::set_num_threads(static_cast<int>(state.range(2)));
  auto& m = model_for(static_cast<int>(state.range(0)));
  const int64_t batch = state.range(1), prompt = 16, steps = 64;
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
  state.SetLabel(kNames[state.range(0)]);
}

void Args(benchmark::internal::Benchmark* b) {
  for (int model : {0, 1})
    for (int batch : {1, 8})
      for (int threads : {1, 2}) b->Args({model, batch, threads});
  b->ArgNames({"model", "batch", "threads"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(BM_Prefill128)->Apply(Args);
BENCHMARK(BM_Decode)->Apply(Args);

}  // namespace

BENCHMARK_MAIN();
