#include <unistd.h>

#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/commands.h"
#include "model/checkpoint.h"
#include "model/generate.h"
#include "util/error.h"
#include "util/json.h"

namespace drafteu::cli {

namespace {

struct GenerateFlags {
  std::string model, tokenizer, prompt, system;
  bool chat = false, json = false;
  int64_t max_tokens = 128;
  std::optional<double> temperature, top_p;
  std::optional<int64_t> top_k;
  uint64_t seed = 0;
};

// Token ids for the prompt: BOS alone when empty, the chat template with --chat.
std::vector<int64_t> prompt_ids(const LoadedModel& m, const GenerateFlags& f) {
  if (!m.tokenizer) fail(m.source.string(), ": the model has no tokenizer; pass --tokenizer");
  const Tokenizer& tok = *m.tokenizer;
  std::vector<int32_t> ids;
  if (f.chat) {
    if (!tok.has_chat_template())
      fail("--chat: the tokenizer of ", m.source.string(), " has no chat template");
    std::vector<ChatMessage> messages;
    if (!f.system.empty()) messages.push_back({"system", f.system});
    messages.push_back({"user", f.prompt});
    ids = tok.encode(tok.apply_chat_template(messages, true), /*add_bos=*/false);
  } else if (f.prompt.empty()) {
    auto bos = m.generation.bos_token_id ? std::optional<int32_t>(*m.generation.bos_token_id)
                                         : tok.bos_id();
    if (!bos) fail("--prompt is empty and the tokenizer has no BOS token to start from");
    ids = {*bos};
  } else {
    ids = tok.encode(f.prompt, /*add_bos=*/tok.bos_id().has_value());
  }
  return {ids.begin(), ids.end()};
}

}  // namespace

void add_generate_command(CLI::App& app, GlobalOptions&) {
  auto f = std::make_shared<GenerateFlags>();
  auto* cmd = app.add_subcommand("generate", "Generate text from a model (HF directory or .gguf)");
  cmd->add_option("--model", f->model, "HF model directory or .gguf file")->required();
  cmd->add_option("--tokenizer", f->tokenizer,
                  "tokenizer.json, HF directory or .gguf (default: the model's)");
  cmd->add_option("--prompt", f->prompt, "prompt text; empty starts from BOS");
  cmd->add_flag("--chat", f->chat, "wrap the prompt in the model's chat template");
  cmd->add_option("--system", f->system, "system message for --chat");
  cmd->add_option("--max-tokens", f->max_tokens, "tokens to generate")->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", f->temperature,
                  "sampling temperature; 0 = greedy (default: generation_config)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-k", f->top_k, "keep the k most likely tokens; 0 = off")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", f->top_p, "nucleus sampling mass; 1 = off")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", f->seed, "random seed for sampling");
  cmd->add_flag("--json", f->json,
                "print one JSON object per token: {\"id\", \"text\", \"logprob\"}");
  auto spec = add_speculative_flags(cmd, /*serving=*/false);
  cmd->callback([f, spec] {
    LoadOptions lo;
    if (!f->tokenizer.empty()) lo.tokenizer = f->tokenizer;
    LoadedModel m = load_model(f->model, lo);
    auto prompt = prompt_ids(m, *f);

    GenerateOptions go;
    const auto& g = m.generation;
    go.sampling.temperature = f->temperature.value_or(g.do_sample ? g.temperature : 0.0);
    go.sampling.top_k = f->top_k.value_or(g.top_k);
    go.sampling.top_p = f->top_p.value_or(g.top_p);
    go.max_new_tokens = f->max_tokens;
    go.seed = f->seed;
    go.stop_ids = g.eos_token_ids;
    if (speculative_requested(*spec)) {  // --drafts / --draft: src/cli/serve.cpp
      run_speculative_generate(*spec, m, prompt, go, f->json);
      return;
    }

    StreamDecoder stream(*m.tokenizer);
    const bool json = f->json;
    generate(*m.model, prompt, go, [&](const GeneratedToken& t) {
      bool stop = std::find(go.stop_ids.begin(), go.stop_ids.end(), t.id) != go.stop_ids.end();
      if (json) {
        nlohmann::json j = {{"id", t.id},
                            {"text", m.tokenizer->decode({static_cast<int32_t>(t.id)})},
                            {"logprob", t.logprob}};
        std::cout << dump_json(j) << "\n";
      } else if (!stop) {
        std::cout << stream.push(static_cast<int32_t>(t.id));
      }
      std::cout.flush();
      return true;
    });
    if (!json) std::cout << stream.flush() << "\n";
  });
}

}  // namespace drafteu::cli
