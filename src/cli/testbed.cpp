// drafteu testbed: builds (or reuses) the arithmetic testbed: task data, tokenizer, a pretrained
// target and draft bases, and prints their accuracies.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "eval/testbed_models.h"

namespace drafteu::cli {

void add_testbed_command(CLI::App& app, GlobalOptions&) {
  auto o = std::make_shared<eval::TestbedOptions>();
  auto out = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "testbed", "Build or reuse the arithmetic testbed (task, tokenizer, target, drafts)");
  cmd->add_option("--out", *out, "cache directory; the testbed goes to OUT/testbed-<hash>")
      ->required();
  cmd->add_option("--seed", o->task.seed, "task seed");
  cmd->add_option("--difficulty", o->task.difficulty, "number ranges, 0 (small) .. 1 (large)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--min-steps", o->task.min_steps, "fewest calculator steps per problem")
      ->check(CLI::Range(2, 4));
  cmd->add_option("--max-steps", o->task.max_steps, "most calculator steps per problem")
      ->check(CLI::Range(2, 4));
  cmd->add_flag("--varied-phrasing", o->task.varied_phrasing,
                "open each solution line with one of several equivalent connectives");
  cmd->add_option("--train", o->n_train, "training problems");
  cmd->add_option("--test", o->n_test, "test problems");
  cmd->add_option("--target-steps", o->target_train.steps, "target pretraining steps");
  auto* hidden = cmd->add_option("--target-hidden", o->target_shape.hidden, "target hidden size");
  cmd->add_option("--target-layers", o->target_shape.layers, "target layers");
  cmd->add_option("--target-lr", o->target_train.lr, "target peak learning rate");
  cmd->add_option("--draft-steps", o->drafts[0].train.steps, "draft pretraining steps");
  cmd->add_option("--vocab", o->bpe.vocab_size, "BPE vocabulary size");
  cmd->add_option("--target-batch", o->target_train.batch_size, "target sequences per step");
  auto dtype = std::make_shared<std::string>("auto");
  cmd->add_option("--dtype", *dtype,
                  "pretraining compute: f32 | bf16 (autocast) | auto (bf16 if the CPU has it)")
      ->check(CLI::IsMember({"f32", "bf16", "auto"}));
  cmd->add_flag("!--draft-from-scratch", o->drafts[0].distill_from_target,
                "train the draft beside the target from scratch (default: distilled from the "
                "trained target's logits)");
  auto draft_init = std::make_shared<std::string>("random");
  cmd->add_option("--draft-init", *draft_init,
                  "the draft's starting weights: random | target_layers (the trained target "
                  "pruned in depth: its embeddings, head and evenly spaced layers)")
      ->check(CLI::IsMember({"random", "target_layers"}));
  cmd->add_flag("!--full-text-loss", o->target_train.answer_only,
                "train the target on question tokens too (default: answer tokens only)");
  cmd->callback([o, out, hidden, dtype, draft_init] {
    o->target_train.dtype = parse_compute_dtype(*dtype, "--dtype");
    o->drafts[0].init_from_target = *draft_init == "target_layers";
    for (auto& d : o->drafts) d.train.dtype = o->target_train.dtype;
    // SwiGLU's usual ~8/3 ratio, rounded to a multiple of 16.
    if (hidden->count() > 0)
      o->target_shape.intermediate = o->target_shape.hidden * 8 / 3 / 16 * 16;
    const auto tb = eval::build_testbed(*o, *out, &std::cerr);
    nlohmann::json summary{{"dir", tb.dir.string()},
                           {"from_cache", tb.from_cache},
                           {"target", tb.info.at("target")},
                           {"drafts", tb.info.at("drafts")}};
    std::cout << summary.dump(2) << std::endl;
  });
}

}  // namespace drafteu::cli
