#include "distill/data.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "family/seeding.h"
#include "util/error.h"

namespace drafteu::distill {

using json = nlohmann::json;

std::vector<int64_t> encode_prompt(const Tokenizer& tok, const std::string& question) {
  std::vector<int32_t> ids;
  if (tok.has_chat_template()) {
    ids = tok.encode(tok.apply_chat_template({{"user", prompt_text(question)}}, true), false);
  } else {
    ids = tok.encode("Question: " + prompt_text(question) + "\nAnswer:", tok.bos_id().has_value());
  }
  return {ids.begin(), ids.end()};
}

std::vector<int64_t> prompt_partition(std::vector<int64_t> idx, int64_t shards, int64_t shard,
                                      uint64_t seed) {
  if (shards < 1) fail("partition: the number of splits must be at least 1, got ", shards);
  if (shard < 0 || shard >= shards) fail("partition: split ", shard, " is outside 0..", shards - 1);
  std::sort(idx.begin(), idx.end());
  idx.erase(std::unique(idx.begin(), idx.end()), idx.end());
  // Fisher-Yates with our own draws: std::shuffle's output is implementation-defined.
  std::mt19937_64 rng(mix_seed({seed, 0x9a27}));
  for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[rng() % i]);
  const auto n = static_cast<int64_t>(idx.size());
  const int64_t begin = n * shard / shards, end = n * (shard + 1) / shards;
  std::vector<int64_t> part(idx.begin() + begin, idx.begin() + end);
  std::sort(part.begin(), part.end());
  return part;
}

std::vector<Sample> select_partition(const std::vector<Sample>& samples, int64_t shards,
                                     int64_t shard, uint64_t seed) {
  std::vector<int64_t> idx;
  for (const auto& s : samples) idx.push_back(s.prompt_index);
  auto part = prompt_partition(idx, shards, shard, seed);
  std::vector<Sample> out;
  for (const auto& s : samples)
    if (std::binary_search(part.begin(), part.end(), s.prompt_index)) out.push_back(s);
  return out;
}

int64_t Batch::loss_tokens() const {
  return loss_mask.sum().item<int64_t>();
}

Batch make_batch(const std::vector<const Sample*>& samples, int64_t max_len, int64_t pad_id) {
  if (samples.empty()) fail("make_batch: no samples");
  int64_t width = 0;
  for (const auto* s : samples) {
    const auto p = static_cast<int64_t>(s->prompt_ids.size());
    if (p >= max_len)
      fail("prompt ", s->prompt_index, " has ", p, " tokens, not below max_seq_len ", max_len);
    width = std::max(width, std::min(max_len, p + static_cast<int64_t>(s->response_ids.size())));
  }
  const auto b = static_cast<int64_t>(samples.size());
  Batch out;
  out.ids = torch::full({b, width}, pad_id, torch::kInt64);
  out.attention = torch::zeros({b, width}, torch::kInt64);
  out.loss_mask = torch::zeros({b, width}, torch::kBool);
  auto ids = out.ids.accessor<int64_t, 2>();
  auto att = out.attention.accessor<int64_t, 2>();
  auto lm = out.loss_mask.accessor<bool, 2>();
  for (int64_t r = 0; r < b; ++r) {
    const auto& s = *samples[static_cast<size_t>(r)];
    const auto p = static_cast<int64_t>(s.prompt_ids.size());
    const int64_t n = std::min(max_len, p + static_cast<int64_t>(s.response_ids.size()));
    for (int64_t t = 0; t < n; ++t) {
      ids[r][t] =
          t < p ? s.prompt_ids[static_cast<size_t>(t)] : s.response_ids[static_cast<size_t>(t - p)];
      att[r][t] = 1;
      if (t >= p) lm[r][t - 1] = true;
    }
    out.prompt_indices.push_back(s.prompt_index);
  }
  out.targets =
      torch::cat({out.ids.narrow(1, 1, width - 1), torch::zeros({b, 1}, torch::kInt64)}, 1)
          .masked_fill(out.loss_mask.logical_not(), 0);
  return out;
}

}  // namespace drafteu::distill
