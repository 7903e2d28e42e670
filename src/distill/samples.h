// The distillation data's files, torch-free (the fuzz harness tests/fuzz/fuzz_jsonl.cpp reads
// them): GSM8K-style prompts and the generated samples, one JSONL line each.
#pragma once
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace drafteu::distill {

// One prompt of a GSM8K-format file ({"question", "answer"}); `index` is its 0-based line.
struct Prompt {
  int64_t index = 0;
  std::string question, answer;
};
// Errors name the file, the line number and the field.
std::vector<Prompt> read_gsm8k(const std::filesystem::path& path);

// The instruction around a question (asks for the final answer in \boxed{}).
std::string prompt_text(const std::string& question);

// One distillation example: a response sampled from target-family member `member` (-1 = the
// unperturbed target) for prompt `prompt_index`; `sample` counts responses per (prompt, member).
struct Sample {
  int64_t prompt_index = 0;
  int64_t member = -1;
  int64_t sample = 0;
  uint64_t seed = 0;
  std::string prompt, response;
  std::vector<int64_t> prompt_ids, response_ids;
};
nlohmann::json sample_to_json(const Sample& s);
// `where` names the file and line for errors.
Sample sample_from_json(const nlohmann::json& j, const std::string& where);
// Reads a samples JSONL file; a malformed line is an error naming the file and line number.
std::vector<Sample> read_samples(const std::filesystem::path& path);

// The (prompt_index, member, sample) keys of a samples file being appended to (gen-data's
// resume): a torn last line (a kill mid-write) is cut off the file and reported in *dropped_torn;
// a malformed line before it is an error naming the file and line.
using SampleKey = std::tuple<int64_t, int64_t, int64_t>;
std::set<SampleKey> existing_sample_keys(const std::filesystem::path& path, bool* dropped_torn);

}  // namespace drafteu::distill
