#include "model/generate.h"

#include <algorithm>

#include "util/error.h"

namespace drafteu {

std::vector<GeneratedToken> generate(LlamaForCausalLMImpl& model,
                                     const std::vector<int64_t>& prompt,
                                     const GenerateOptions& options,
                                     const std::function<bool(const GeneratedToken&)>& on_token) {
  if (prompt.empty()) fail("generate: the prompt must hold at least one token (e.g. BOS)");
  const int64_t vocab = model.config().vocab_size;
  for (auto id : prompt)
    if (id < 0 || id >= vocab)
      fail("generate: prompt token ", id, " is outside the vocabulary (", vocab, ")");
  torch::NoGradGuard no_grad;
  Sampler sampler(options.seed);
  auto cache = model.new_cache(static_cast<int64_t>(prompt.size()) + options.max_new_tokens);
  auto opts = torch::TensorOptions().dtype(torch::kInt64).device(model.device());
  auto input = torch::tensor(prompt, torch::kInt64).to(model.device()).unsqueeze(0);
  std::vector<GeneratedToken> out;
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    auto logits = model.forward(input, &cache, {}, /*last_only=*/true).reshape({vocab});
    GeneratedToken tok;
    tok.id = sampler.sample_from_logits(logits, options.sampling);
    tok.logprob = torch::log_softmax(logits.to(torch::kFloat32), -1)[tok.id].item<double>();
    out.push_back(tok);
    if (on_token && !on_token(tok)) break;
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), tok.id) !=
        options.stop_ids.end())
      break;
    input = torch::full({1, 1}, tok.id, opts);
  }
  return out;
}

}  // namespace drafteu
