#include "distill/trainer.h"

#include <malloc.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <optional>
#include <random>
#include <set>

#include "distill/checkpoint.h"
#include "distill/config.h"
#include "distill/manifest.h"
#include "family/peft.h"
#include "family/seeding.h"
#include "model/autocast.h"
#include "util/error.h"
#include "util/file.h"
#include "util/progress.h"

namespace drafteu::distill {

namespace fs = std::filesystem;
using json = nlohmann::json;

torch::optim::AdamWOptions adamw_options(const TrainConfig& c) {
  return torch::optim::AdamWOptions(c.lr)
      .betas({c.adam_beta1, c.adam_beta2})
      .eps(c.adam_eps)
      .weight_decay(c.weight_decay);
}

namespace {

int64_t micro_per_epoch(const TrainConfig& c, int64_t samples) {
  return (samples + c.batch_size - 1) / c.batch_size;
}

int64_t total_micro(const TrainConfig& c, int64_t samples) {
  if (c.max_steps > 0) return c.max_steps * c.grad_accum;
  return static_cast<int64_t>(
      std::ceil(c.epochs * static_cast<double>(micro_per_epoch(c, samples)) - 1e-9));
}

// Keeps metrics lines of steps <= `step` (a resumed run rewrites the steps after it).
void truncate_metrics(const fs::path& file, int64_t step) {
  if (!fs::exists(file)) return;
  std::ifstream in(file);
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      if (json::parse(line).value("step", int64_t{0}) <= step) kept += line + "\n";
    } catch (const json::exception&) {  // a torn last line
    }
  }
  write_file_atomic(file, kept);
}

// Creates `out` and proves it writable now, so a read-only or full directory fails before any
// training time is spent.
void ensure_writable(const fs::path& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) fail(out.string(), ": cannot create the output directory: ", ec.message());
  write_file_atomic(out / ".write-test", std::string(4096, '\0'));
  fs::remove(out / ".write-test", ec);
}

}  // namespace

void TrainConfig::validate(const std::string& source) const {
  train_config_fields().check(*this, source);  // the ranges live in the field table
}

Batch Objective::batch_for(const std::vector<const Sample*>& rows, int64_t max_len,
                           const StepContext&) {
  return make_batch(rows, max_len);
}

int64_t total_steps(const TrainConfig& c, int64_t samples) {
  if (c.max_steps > 0) return c.max_steps;
  return (total_micro(c, samples) + c.grad_accum - 1) / c.grad_accum;
}

std::vector<int64_t> micro_batch_indices(const TrainConfig& c, int64_t samples, int64_t g) {
  const int64_t per_epoch = micro_per_epoch(c, samples);
  const int64_t epoch = g / per_epoch, pos = g % per_epoch;
  std::vector<int64_t> order(static_cast<size_t>(samples));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(mix_seed({c.seed, static_cast<uint64_t>(epoch), 0xe90c}));
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  const int64_t begin = pos * c.batch_size, end = std::min(samples, begin + c.batch_size);
  return {order.begin() + begin, order.begin() + end};
}

void tune_malloc_for_training() {
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 1 << 30);
}

namespace {

// The step a run resumes at (0 without a checkpoint); a checkpoint of another run is an error.
int64_t resume_step(const fs::path& out, LoraAdapterImpl& adapter, torch::optim::AdamW& optimizer,
                    const TrainConfig& config, int64_t steps) {
  auto ck = load_latest_checkpoint(out, adapter, optimizer);
  if (!ck) return 0;
  if (ck->step > steps)
    fail((out / "checkpoints").string(), ": the latest checkpoint is at step ", ck->step,
         " but this run has only ", steps, " steps (use a fresh output directory)");
  if (ck->info.value("seed", config.seed) != config.seed)
    fail(out.string(), ": checkpoint was made with seed ", ck->info.value("seed", uint64_t{0}),
         ", this run uses ", config.seed, " (use a fresh output directory)");
  return ck->step;
}

struct StepOutcome {
  double loss = 0, grad_norm = 0;
  int64_t tokens = 0, micro_count = 0;
  std::map<std::string, double> extra;  // the objective's own metrics, summed over micro-batches
};

// One optimizer step: grad_accum micro-batches (each seeded by (seed, step, micro-batch)), the
// clipped update, and the checks that nothing became non-finite.
StepOutcome optimizer_step(Objective& objective, const std::vector<Sample>& data,
                           const TrainConfig& config, ComputeDtype compute_dtype, int64_t step,
                           torch::optim::AdamW& optimizer, std::vector<torch::Tensor>& params) {
  const auto n = static_cast<int64_t>(data.size());
  const int64_t micros = total_micro(config, n);
  optimizer.zero_grad();
  objective.adapter().train();
  StepOutcome o;
  double loss_sum = 0;
  for (int64_t a = 0; a < config.grad_accum; ++a) {
    const int64_t g = step * config.grad_accum + a;
    if (g >= micros) break;
    std::vector<const Sample*> rows;
    for (auto i : micro_batch_indices(config, n, g)) rows.push_back(&data[static_cast<size_t>(i)]);
    StepContext ctx{config.seed, step, a};
    torch::manual_seed(mix_seed(
        {config.seed, static_cast<uint64_t>(step), static_cast<uint64_t>(a), 0xd40f}));  // dropout
    Batch batch = objective.batch_for(rows, config.max_seq_len, ctx);
    if (batch.loss_tokens() == 0) continue;
    MicroLoss ml;
    {
      Autocast autocast(compute_dtype);  // forward only: backward follows the forward's types
      ml = objective.loss(batch, ctx);
    }
    const double micro_loss = ml.loss.item<double>();
    if (!std::isfinite(micro_loss))
      fail(objective.name(), ": step ", step + 1, " micro-batch ", a, ": the loss is not finite (",
           micro_loss,
           "); lower the learning rate or check the data (nothing of this step was saved)");
    (ml.loss / static_cast<double>(config.grad_accum)).backward();
    loss_sum += micro_loss;
    o.tokens += batch.attention.sum().item<int64_t>();
    ++o.micro_count;
    for (const auto& [k, v] : ml.metrics) o.extra[k] += v;
  }
  if (config.max_grad_norm > 0)
    o.grad_norm = torch::nn::utils::clip_grad_norm_(params, config.max_grad_norm);
  optimizer.step();
  for (const auto& p : params)
    if (!torch::isfinite(p).all().item<bool>())
      fail(objective.name(), ": step ", step + 1,
           ": the adapter became non-finite (inf or NaN); lower the learning rate");
  o.loss = o.micro_count ? loss_sum / static_cast<double>(o.micro_count) : 0.0;
  return o;
}

// The finished run: the PEFT adapter and the manifest (with the prompts the run saw).
void finish_run(Objective& objective, const std::vector<Sample>& data, const TrainConfig& config,
                const fs::path& out, const json& run_info, int64_t steps, TrainResult& result) {
  const auto n = static_cast<int64_t>(data.size());
  std::set<int64_t> seen;
  for (int64_t g = 0; g < total_micro(config, n); ++g)
    for (auto i : micro_batch_indices(config, n, g))
      seen.insert(data[static_cast<size_t>(i)].prompt_index);
  result.prompts_seen.assign(seen.begin(), seen.end());
  result.finished = true;
  result.adapter_dir = out / "adapter";
  objective.adapter().eval();
  save_peft_adapter(objective.adapter(), result.adapter_dir);

  json manifest = run_info;
  manifest["method"] = objective.name();
  manifest["objective"] = objective.describe();
  manifest["train"] = to_json(config);
  manifest["seed"] = config.seed;
  manifest["samples"] = n;
  if (run_info.contains("data") && run_info["data"].is_string()) {
    const fs::path p = run_info["data"].get<std::string>();
    if (fs::exists(p)) manifest["data_sha256"] = sha256_file(p);
  }
  manifest["final"] = {{"steps", steps}, {"loss", result.last_loss}};
  manifest["prompts_seen"] = result.prompts_seen;
  write_manifest(out, manifest);
}

}  // namespace

TrainResult train(Objective& objective, const std::vector<Sample>& data, const TrainConfig& config,
                  const fs::path& out, const json& run_info) {
  config.validate("training config");
  const ComputeDtype compute_dtype = parse_compute_dtype(config.dtype, "training config: dtype");
  if (data.empty()) fail("train: no training samples");
  tune_malloc_for_training();
  ensure_writable(out);
  const auto n = static_cast<int64_t>(data.size());
  const int64_t steps = total_steps(config, n), micros = total_micro(config, n);

  LoraAdapterImpl& adapter = objective.adapter();
  auto params = adapter.parameters();
  torch::optim::AdamW optimizer(params, adamw_options(config));
  const int64_t start = resume_step(out, adapter, optimizer, config, steps);
  const fs::path metrics_file = out / "metrics.jsonl";
  truncate_metrics(metrics_file, start);
  std::ofstream metrics(metrics_file, std::ios::app);
  if (!metrics) fail(metrics_file.string(), ": cannot open for writing: ", std::strerror(errno));

  TrainResult result;
  result.total_steps = steps;
  result.steps_done = start;
  std::optional<ProgressBar> progress;
  if (config.progress)
    progress.emplace(objective.name(), steps, "steps")
        .resume_from(start)
        .log_every(config.log_every);
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  int64_t done_this_run = 0, tokens_this_run = 0;
  for (int64_t step = start; step < steps; ++step) {
    const double lr = config.lr * lr_multiplier(config.schedule, step, steps);
    for (auto& group : optimizer.param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    const StepOutcome o =
        optimizer_step(objective, data, config, compute_dtype, step, optimizer, params);
    result.last_loss = o.loss;
    json line = {{"step", step + 1},         {"loss", o.loss},     {"lr", lr},
                 {"grad_norm", o.grad_norm}, {"tokens", o.tokens}, {"elapsed_s", seconds()}};
    for (const auto& [k, v] : o.extra)
      line[k] = v / static_cast<double>(std::max<int64_t>(o.micro_count, 1));
    metrics << line.dump() << "\n" << std::flush;
    if (!metrics) fail(metrics_file.string(), ": write failed (disk full?)");
    tokens_this_run += o.tokens;
    if (progress) {
      const double secs = seconds();
      char status[64];
      std::snprintf(status, sizeof status, "loss %.4f, %.0f tok/s", o.loss,
                    secs > 0 ? static_cast<double>(tokens_this_run) / secs : 0.0);
      progress->update(step + 1, status);
    }
    result.steps_done = step + 1;
    ++done_this_run;
    const bool last = step + 1 == steps;
    const bool stop = config.stop_after > 0 && done_this_run >= config.stop_after && !last;
    if (last || stop || (config.save_every > 0 && (step + 1) % config.save_every == 0)) {
      json st = {{"seed", config.seed},
                 {"data_cursor", std::min(micros, (step + 1) * config.grad_accum)},
                 {"total_steps", steps},
                 {"loss", o.loss},
                 {"rng", "every draw is a function of (seed, step, micro-batch)"}};
      save_checkpoint(out, step + 1, adapter, optimizer, st, config.keep_checkpoints);
    }
    if (stop) {
      if (progress) progress->finish();
      return result;
    }
  }
  if (progress) progress->finish();
  finish_run(objective, data, config, out, run_info, steps, result);
  return result;
}

}  // namespace drafteu::distill
