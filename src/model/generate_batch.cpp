#include "model/generate_batch.h"

#include <algorithm>

#include "util/error.h"

namespace drafteu {

std::vector<std::vector<int64_t>> generate_batch(LlamaForCausalLMImpl& model,
                                                 const std::vector<std::vector<int64_t>>& prompts,
                                                 const std::vector<uint64_t>& seeds,
                                                 const BatchGenerateOptions& options) {
  if (prompts.size() != seeds.size())
    fail("generate_batch: ", prompts.size(), " prompts but ", seeds.size(), " seeds");
  const auto rows = static_cast<int64_t>(prompts.size());
  std::vector<std::vector<int64_t>> out(prompts.size());
  if (rows == 0 || options.max_new_tokens <= 0) return out;
  const int64_t vocab = model.config().vocab_size;
  size_t width = 0;
  for (const auto& p : prompts) {
    if (p.empty()) fail("generate_batch: every prompt must hold at least one token (e.g. BOS)");
    for (auto id : p)
      if (id < 0 || id >= vocab)
        fail("generate_batch: prompt token ", id, " is outside the vocabulary (", vocab, ")");
    width = std::max(width, p.size());
  }
  torch::NoGradGuard no_grad;
  const auto w = static_cast<int64_t>(width);
  auto ids = torch::full({rows, w}, options.pad_id, torch::kInt64);
  auto mask = torch::zeros({rows, w}, torch::kInt64);
  for (int64_t r = 0; r < rows; ++r) {
    const auto& p = prompts[static_cast<size_t>(r)];
    const auto n = static_cast<int64_t>(p.size());
    ids[r].narrow(0, w - n, n).copy_(torch::tensor(p, torch::kInt64));
    mask[r].narrow(0, w - n, n).fill_(1);
  }
  std::vector<Sampler> samplers;
  for (auto s : seeds) samplers.emplace_back(s);
  std::vector<int64_t> active(static_cast<size_t>(rows));  // batch row -> prompt index
  for (int64_t r = 0; r < rows; ++r) active[static_cast<size_t>(r)] = r;

  auto cache = model.new_cache(w + options.max_new_tokens);
  auto input = ids.to(model.device());
  auto full_mask = mask.to(model.device());
  for (int64_t step = 0; step < options.max_new_tokens && !active.empty(); ++step) {
    auto logits = model.forward(input, &cache, full_mask, /*last_only=*/true).select(1, 0);
    logits = logits.to(torch::kCPU, torch::kFloat32);
    std::vector<int64_t> keep, next;
    for (size_t b = 0; b < active.size(); ++b) {
      const auto r = static_cast<size_t>(active[b]);
      const int64_t tok =
          samplers[r].sample_from_logits(logits[static_cast<int64_t>(b)], options.sampling);
      out[r].push_back(tok);
      const bool stop = std::find(options.stop_ids.begin(), options.stop_ids.end(), tok) !=
                        options.stop_ids.end();
      if (!stop) {
        keep.push_back(static_cast<int64_t>(b));
        next.push_back(tok);
      }
    }
    if (keep.size() != active.size()) {
      auto idx = torch::tensor(keep, torch::kInt64);
      cache.select_rows(idx);
      full_mask = full_mask.index_select(0, idx.to(full_mask.device()));
      std::vector<int64_t> still;
      for (auto b : keep) still.push_back(active[static_cast<size_t>(b)]);
      active = std::move(still);
    }
    if (active.empty()) break;
    input = torch::tensor(next, torch::kInt64).to(model.device()).unsqueeze(1);
    full_mask = torch::cat({full_mask, torch::ones_like(full_mask.narrow(1, 0, 1))}, 1);
  }
  return out;
}

}  // namespace drafteu
