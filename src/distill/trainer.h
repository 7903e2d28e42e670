// The one training loop every distillation method shares. A method is an Objective: the trained
// LoRA adapter, a data policy (which responses a batch trains on) and a loss. The loop owns the
// rest: data order, AdamW, warmup schedules, gradient accumulation and clipping, checkpoints,
// resume, progress, metrics and the manifest.
//
// Reproducibility: every random draw is a function of (seed, step, micro-batch): the epoch's
// data order, dropout (torch's global generator is reseeded before each micro-batch), teacher
// noise and student samples. With the weights, AdamW moments and step restored from a checkpoint,
// a resumed run therefore computes exactly the steps an uninterrupted run would.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "distill/data.h"
#include "distill/schedule.h"
#include "family/lora.h"

namespace drafteu::distill {

struct TrainConfig {
  double lr = 3e-4;
  double weight_decay = 0.01;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_eps = 1e-8;
  double max_grad_norm = 1.0;  // 0 = no clipping
  ScheduleConfig schedule;
  int64_t batch_size = 8;
  int64_t grad_accum = 1;
  double epochs = 1.0;
  int64_t max_steps = 0;  // > 0 caps the optimizer steps
  int64_t max_seq_len = 512;
  int64_t save_every = 0;  // checkpoint every N steps (and always at the end); 0 = end only
  int64_t keep_checkpoints = 2;
  int64_t log_every = 10;
  uint64_t seed = 0;
  // "f32", or "bf16": forwards under bf16 autocast (matmuls in bf16, weights and optimizer
  // state in f32); see model/autocast.h.
  std::string dtype = "f32";
  bool progress = true;
  // Ends this process's run after so many steps (a checkpoint is written first); for tests and
  // for splitting a long run into slices.
  int64_t stop_after = 0;

  void validate(const std::string& source) const;
};

struct StepContext {
  uint64_t seed = 0;
  int64_t step = 0;   // optimizer step (0-based)
  int64_t micro = 0;  // micro-batch within the step
};

struct MicroLoss {
  torch::Tensor loss;  // scalar with autograd
  int64_t tokens = 0;  // loss tokens it averages over
  std::map<std::string, double> metrics;
};

class Objective {
 public:
  virtual ~Objective() = default;
  virtual std::string name() const = 0;
  virtual LoraAdapterImpl& adapter() = 0;
  // The data policy: the batch this micro-step trains on, from its dataset rows (default: the
  // dataset's responses; on-policy methods sample their own).
  virtual Batch batch_for(const std::vector<const Sample*>& rows, int64_t max_len,
                          const StepContext& ctx);
  virtual MicroLoss loss(const Batch& batch, const StepContext& ctx) = 0;
  // Method settings for the manifest.
  virtual nlohmann::json describe() const = 0;
};

struct TrainResult {
  int64_t steps_done = 0;
  int64_t total_steps = 0;
  bool finished = false;  // false when stop_after ended the run early
  double last_loss = 0;
  std::vector<int64_t> prompts_seen;  // sorted prompt indices of every batch trained on
  std::filesystem::path adapter_dir;  // out/adapter once finished
};

// Optimizer steps a run takes over `samples` examples.
int64_t total_steps(const TrainConfig& config, int64_t samples);
// The sample indices of global micro-batch `g` (epoch order seeded by (seed, epoch)).
std::vector<int64_t> micro_batch_indices(const TrainConfig& config, int64_t samples, int64_t g);

// Trains into `out`: checkpoints/ (resumed from when present), metrics.jsonl, adapter/ (PEFT) and
// manifest.json. `run_info` (config, models, data path) goes into the manifest; a "data" path in it
// is hashed.
TrainResult train(Objective& objective, const std::vector<Sample>& data, const TrainConfig& config,
                  const std::filesystem::path& out, const nlohmann::json& run_info = {});

// Keeps freed memory in the process (no per-step mmap/munmap of large buffers): page faults on
// fresh full-vocabulary buffers otherwise dominate a step on this hardware.
void tune_malloc_for_training();

// AdamW with the config's lr, betas, eps and weight decay (the trainer's, and the testbed's).
torch::optim::AdamWOptions adamw_options(const TrainConfig& c);

}  // namespace drafteu::distill
