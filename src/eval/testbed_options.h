// What the testbed builds (task, tokenizer, model shapes, pretraining), torch-free so the
// experiment config reader (eval/experiment_config.h) builds without torch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/bpe_trainer.h"
#include "eval/testbed_task.h"
#include "model/compute_dtype.h"

namespace drafteu::eval {

struct ModelShape {
  int64_t hidden = 128, intermediate = 384, layers = 4, heads = 4, kv_heads = 4;
};

struct PretrainOptions {
  int64_t steps = 1000;
  int64_t batch_size = 32;
  double lr = 3e-3;
  double min_lr_ratio = 0.1;  // cosine decays to lr * this
  int64_t warmup = 50;
  double weight_decay = 0.01;
  double clip_norm = 1.0;
  uint64_t seed = 1;       // initialisation and batch order
  int64_t log_every = 50;  // progress lines; 0 = none
  // Loss on the answer tokens only (as SFT trainers do): the question's random numbers carry no
  // learnable signal, and the gradient goes to copying operands and doing the arithmetic.
  bool answer_only = true;
  ComputeDtype dtype = ComputeDtype::F32;  // bf16: forwards under bf16 autocast
};

struct DraftSpec {
  std::string name = "draft";
  ModelShape shape{64, 192, 2, 4, 4};
  PretrainOptions train{};
  // Distilled from the trained target (forward KL on its logits over the training texts) rather
  // than trained beside it from scratch: the draft is the target's own family, as Llama 3.2 1B/3B
  // are Llama 3.1's.
  bool distill_from_target = true;
  // Starts from the trained target pruned in depth (its embeddings, final norm, lm_head and an
  // evenly spaced subset of its layers, first and last kept) instead of random weights, as Llama
  // 3.2 1B/3B began from a pruned Llama 3.1 8B. Needs the target's width.
  bool init_from_target = false;
};

struct TestbedOptions {
  TaskOptions task{};
  size_t n_train = 6000, n_test = 300;
  BpeOptions bpe{};
  ModelShape target_shape{};
  PretrainOptions target_train{};
  std::vector<DraftSpec> drafts{DraftSpec{}};
  int64_t max_positions = 320;
  size_t eval_problems = 300;  // test problems whose accuracy is measured and recorded

  TestbedOptions();  // the tuned defaults
  nlohmann::json to_json() const;
  std::string key() const;  // hash of to_json(): the cache directory's name
};

}  // namespace drafteu::eval
