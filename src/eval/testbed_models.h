// The testbed's models: a BPE tokenizer trained on generated problems, a small target and
// smaller draft bases pretrained from scratch on them (causal LM, AdamW, cosine schedule), and
// greedy-decoding accuracy. Built once per configuration and cached as HF directories.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/bpe_trainer.h"
#include "eval/testbed_options.h"
#include "eval/testbed_task.h"
#include "model/autocast.h"
#include "model/llama.h"
#include "model/tokenizer/tokenizer.h"

namespace drafteu::eval {

// Knowledge distillation from a trained teacher (the paper's drafts were pretrained with the
// target's logits as targets): the loss is the forward KL(p_teacher ‖ q_student) per loss token,
// optionally mixed with the data's cross-entropy (weight `ce_weight`).
struct PretrainTeacher {
  LlamaForCausalLMImpl* model = nullptr;
  double ce_weight = 0.0;
};

struct PretrainStats {
  std::vector<double> losses;  // one per step
  int64_t tokens = 0;
  double seconds = 0;      // wall clock
  double cpu_seconds = 0;  // CPU time of the training thread and of the teacher's prefetch thread
};

// Text a model sees: the prompt ends where the answer begins.
std::string prompt_text(const Problem& p);    // "Question: ...\nAnswer:"
std::string training_text(const Problem& p);  // prompt + " " + solution

LlamaConfig testbed_config(const ModelShape& shape, int64_t vocab_size, int64_t max_positions);
// Fresh weights, N(0, 0.02) matrices and unit norms, from `seed`.
LlamaForCausalLM init_model(const LlamaConfig& config, uint64_t seed);

// Depth pruning, the way Llama 3.2 1B/3B began from Llama 3.1 8B: `draft` takes the target's
// embeddings, final norm, lm_head and an evenly spaced subset of its layers (first and last
// kept). Needs the target's width and at most its depth; `name` names the draft in errors.
void init_from_pruned_target(LlamaForCausalLMImpl& draft, const LlamaForCausalLMImpl& target,
                             const std::string& name);

// Function-preserving width growth (Net2Net-style): a copy of `source` grown to hidden size
// `hidden` whose logits equal the source's (up to float rounding). Heads (query and key/value,
// so head_dim and the grouping stay) and the MLP's intermediate size grow by hidden / H; layers
// and vocabulary stay. The source's weights sit in the leading block of each wide tensor; every
// new entry that writes into the residual stream (embedding columns, o_proj and down_proj rows
// of new dims and columns of new heads / neurons) is zero, so the residual stays zero on the new
// dims, and every new entry that only reads (q/k/v, gate/up, lm_head) is drawn from
// N(0, rms of that tensor) with `seed`, so the wide model is dense. RMSNorm's mean over the wide
// dims is H / hidden of the narrow one: norm weights are scaled by sqrt(H / hidden) and
// rms_norm_eps by H / hidden, which makes the normalised residual exact. `hidden` must be a
// multiple of head_dim, at least H, and give whole key/value heads; `name` names the model in
// errors.
LlamaForCausalLM widen_llama(const LlamaForCausalLMImpl& source, int64_t hidden, uint64_t seed,
                             const std::string& name);

// Full-parameter next-token cross-entropy on `sequences` (token ids, BOS/EOS included). With
// `loss_from` (one entry per sequence), sequence i's loss counts the tokens from index
// loss_from[i] on; without it, every token after BOS.
PretrainStats pretrain(LlamaForCausalLMImpl& model,
                       const std::vector<std::vector<int64_t>>& sequences,
                       const PretrainOptions& options, std::ostream* log = nullptr,
                       const std::string& label = "model",
                       const std::vector<size_t>& loss_from = {},
                       const PretrainTeacher& teacher = {});

// Greedy continuations of `prompts` (left-padded batches with a KV cache), stopping at EOS.
std::vector<std::string> greedy_complete(LlamaForCausalLMImpl& model, const Tokenizer& tok,
                                         const std::vector<std::string>& prompts,
                                         int64_t max_new_tokens = 160, int64_t batch_size = 64);

struct AccuracyReport {
  double accuracy = 0;
  std::vector<int> correct;
  std::vector<std::string> responses;
};
AccuracyReport evaluate_accuracy(LlamaForCausalLMImpl& model, const Tokenizer& tok,
                                 const std::vector<Problem>& problems, int64_t batch_size = 64);

struct Testbed {
  std::filesystem::path dir;  // <cache>/testbed-<key>
  std::filesystem::path target_dir;
  std::vector<std::filesystem::path> draft_dirs;
  std::filesystem::path train_jsonl, test_jsonl;
  nlohmann::json info;  // testbed.json: options, accuracies, losses, wall times
  bool from_cache = false;
};

// Builds the testbed under cache_dir (temp dir, then an atomic rename) or reuses it.
Testbed build_testbed(const TestbedOptions& options, const std::filesystem::path& cache_dir,
                      std::ostream* log = nullptr);

}  // namespace drafteu::eval
