// Distillation data (`drafteu gen-data`): N sampled responses per prompt from each chosen member
// of the target family, generated in batches and appended to a JSONL file line by line. A rerun
// after a kill reads the file, drops a torn last line and skips the (prompt, member, sample) keys
// already there; every response is seeded by its key, so the result equals an uninterrupted run.
#pragma once
#include <cstdint>
#include <filesystem>
#include <vector>

#include "family/noise.h"
#include "model/checkpoint.h"
#include "model/sampling.h"

namespace drafteu::distill {

struct GenDataConfig {
  std::filesystem::path prompts;     // GSM8K-format JSONL
  int64_t max_prompts = 0;           // first N prompts of the file (0 = all)
  std::vector<int64_t> members{-1};  // target-family members; -1 = the unperturbed target
  int64_t responses = 4;             // per (prompt, member)
  NoiseConfig noise = NoiseConfig::target_family(0);
  SamplingParams sampling;  // temperature 1, top-p 1
  int64_t max_new_tokens = 256;
  int64_t batch_size = 8;
  uint64_t seed = 0;
  int64_t shards = 1, shard = 0;  // generate only prompt shard `shard` of `shards`
  uint64_t shard_seed = 0;
  int64_t stop_after = 0;  // stop after writing this many lines (tests)
  bool progress = true;

  void validate() const;
};

struct GenDataResult {
  int64_t total = 0, existing = 0, written = 0;
  bool dropped_torn_line = false;
};

GenDataResult generate_data(LoadedModel& target, const GenDataConfig& config,
                            const std::filesystem::path& out_jsonl);

}  // namespace drafteu::distill
