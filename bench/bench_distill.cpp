// Training throughput (tokens/s) of the OSD and draft steps on the ~15M shape (stories15m preset,
// random init): teacher forwards, student forward + backward, clipping and AdamW, as the trainer
// runs them. tools/bench_distill.sh runs it beside the PyTorch-Python reference of the same step.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "distill/drafts.h"
#include "distill/osd.h"
#include "model/autocast.h"
#include "model/runtime.h"

using namespace drafteu;
using namespace drafteu::distill;

namespace {

constexpr int64_t kBatch = 8, kPrompt = 32, kResponse = 96;

LlamaForCausalLM model(uint64_t seed) {
  torch::manual_seed(seed);
  return LlamaForCausalLM(LlamaConfig::preset("stories15m"));
}

std::vector<Sample> samples() {
  torch::manual_seed(5);
  std::vector<Sample> out(kBatch);
  for (auto& s : out) {
    auto ids = torch::randint(3, 32000, {kPrompt + kResponse}, torch::kInt64);
    std::vector<int64_t> v(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
    s.prompt_ids.assign(v.begin(), v.begin() + kPrompt);
    s.response_ids.assign(v.begin() + kPrompt, v.end());
  }
  return out;
}

// Args: threads, dtype (0 f32, 1 bf16 autocast as the trainer's dtype "bf16").
void run_steps(benchmark::State& state, Objective& obj) {
  configure_threads(static_cast<int>(state.range(0)));
  const auto dtype = state.range(1) ? ComputeDtype::BF16 : ComputeDtype::F32;
  state.SetLabel(to_string(dtype));
  tune_malloc_for_training();
  auto data = samples();
  std::vector<const Sample*> rows;
  for (const auto& s : data) rows.push_back(&s);
  auto params = obj.adapter().parameters();
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-4).weight_decay(0.01));
  obj.adapter().train();
  int64_t step = 0;
  for (auto _ : state) {
    StepContext ctx{0, step++, 0};
    auto batch = obj.batch_for(rows, 512, ctx);
    opt.zero_grad();
    torch::Tensor loss;
    {
      Autocast autocast(dtype);
      loss = obj.loss(batch, ctx).loss;
    }
    loss.backward();
    torch::nn::utils::clip_grad_norm_(params, 1.0);
    opt.step();
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(kBatch * (kPrompt + kResponse)),
                         benchmark::Counter::kIsIterationInvariantRate);
}

void BM_OsdStep(benchmark::State& state) {
  OsdObjective obj(model(1), OsdConfig{}, 2);
  run_steps(state, obj);
}

void BM_DraftStep(benchmark::State& state) {
  auto target = model(1);
  Teacher teacher{target, NoiseSampler(*target, NoiseConfig::target_family(0)).member(0)};
  DraftObjective obj(model(3), teacher, DraftFamilyConfig::default_lora(), {}, 2);
  run_steps(state, obj);
}

}  // namespace

BENCHMARK(BM_OsdStep)
    ->ArgsProduct({{1, 2}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
BENCHMARK(BM_DraftStep)
    ->ArgsProduct({{1, 2}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
BENCHMARK_MAIN();
