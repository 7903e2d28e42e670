#include "distill/gen_data.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "distill/data.h"
#include "family/low_rank.h"
#include "family/seeding.h"
#include "model/generate_batch.h"
#include "util/error.h"
#include "util/json.h"

namespace drafteu::distill {

namespace fs = std::filesystem;

void GenDataConfig::validate() const {
  if (prompts.empty()) fail("gen-data: missing field 'prompts'");
  if (responses < 1) fail("gen-data: responses must be >= 1");
  if (batch_size < 1) fail("gen-data: batch_size must be >= 1");
  if (max_new_tokens < 1) fail("gen-data: max_new_tokens must be >= 1");
  if (members.empty()) fail("gen-data: members is empty");
  for (auto m : members)
    if (m < -1) fail("gen-data: member ", m, " is invalid (-1 = the unperturbed target)");
  if (shards < 1 || shard < 0 || shard >= shards)
    fail("gen-data: shard ", shard, " is outside 0..", shards - 1);
}

GenDataResult generate_data(LoadedModel& target, const GenDataConfig& c, const fs::path& out) {
  c.validate();
  if (!target.tokenizer) fail(target.source.string(), ": the target has no tokenizer");
  const Tokenizer& tok = *target.tokenizer;
  auto prompts = read_gsm8k(c.prompts);
  if (c.max_prompts > 0 && static_cast<int64_t>(prompts.size()) > c.max_prompts)
    prompts.resize(static_cast<size_t>(c.max_prompts));
  std::vector<int64_t> indices;
  for (const auto& p : prompts) indices.push_back(p.index);
  const auto part = prompt_partition(indices, c.shards, c.shard, c.shard_seed);

  GenDataResult result;
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  const auto done = existing_sample_keys(out, &result.dropped_torn_line);
  result.existing = static_cast<int64_t>(done.size());
  std::ofstream file(out, std::ios::binary | std::ios::app);
  if (!file) fail(out.string(), ": cannot open for appending: ", std::strerror(errno));
  // Bytes of whole lines in the file: a failed write (a full disk) is cut back to this, so the
  // file never ends in a partial line.
  uintmax_t whole = fs::file_size(out);

  std::vector<int64_t> stop = target.generation.eos_token_ids;
  if (stop.empty())
    for (auto id : tok.eos_ids()) stop.push_back(id);
  BatchGenerateOptions go;
  go.sampling = c.sampling;
  go.max_new_tokens = c.max_new_tokens;
  go.stop_ids = stop;

  std::unique_ptr<NoiseSampler> sampler;
  for (auto m : c.members)
    if (m >= 0 && !sampler) sampler = std::make_unique<NoiseSampler>(*target.model, c.noise);
  target.model->eval();
  result.total = static_cast<int64_t>(part.size() * c.members.size()) * c.responses;
  for (auto member : c.members) {
    AttachedDeltas attached;
    if (member >= 0) attached = attach_member(*target.model, sampler->member(member));
    std::vector<Sample> pending;
    auto flush = [&] {
      if (pending.empty()) return;
      std::vector<std::vector<int64_t>> ids;
      std::vector<uint64_t> seeds;
      for (const auto& s : pending) ids.push_back(s.prompt_ids), seeds.push_back(s.seed);
      auto responses = generate_batch(*target.model, ids, seeds, go);
      for (size_t i = 0; i < pending.size(); ++i) {
        auto& s = pending[i];
        s.response_ids = std::move(responses[i]);
        std::vector<int32_t> r(s.response_ids.begin(), s.response_ids.end());
        s.response = tok.decode(r, /*skip_special=*/true);
        // Undertrained models emit invalid UTF-8; the token ids stay exact, the text gets U+FFFD.
        const std::string line = dump_json(sample_to_json(s)) + "\n";
        errno = 0;
        file << line << std::flush;
        if (!file) {
          const int e = errno;
          file.close();
          std::error_code ec;
          fs::resize_file(out, whole, ec);
          fail(out.string(), ": write failed", e ? cat(": ", std::strerror(e)) : std::string(),
               " (disk full?); the ", result.existing + result.written,
               " lines before it are intact, rerun to continue");
        }
        whole += line.size();
        ++result.written;
        if (c.stop_after > 0 && result.written >= c.stop_after) return;
      }
      if (c.progress)
        std::fprintf(stderr, "gen-data: %lld/%lld\n",
                     static_cast<long long>(result.existing + result.written),
                     static_cast<long long>(result.total));
      pending.clear();
    };
    for (const auto& p : prompts) {
      if (!std::binary_search(part.begin(), part.end(), p.index)) continue;
      auto prompt_ids = encode_prompt(tok, p.question);
      for (int64_t k = 0; k < c.responses; ++k) {
        if (done.count({p.index, member, k})) continue;
        Sample s;
        s.prompt_index = p.index, s.member = member, s.sample = k;
        s.seed = mix_seed({c.seed, static_cast<uint64_t>(p.index), static_cast<uint64_t>(member),
                           static_cast<uint64_t>(k)});
        s.prompt = prompt_text(p.question);
        s.prompt_ids = prompt_ids;
        pending.push_back(std::move(s));
        if (static_cast<int64_t>(pending.size()) == c.batch_size) flush();
        if (c.stop_after > 0 && result.written >= c.stop_after) return result;
      }
    }
    flush();
    if (c.stop_after > 0 && result.written >= c.stop_after) return result;
  }
  return result;
}

}  // namespace drafteu::distill
