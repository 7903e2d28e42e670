#include "distill/samples.h"

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "util/error.h"
#include "util/json.h"

namespace drafteu::distill {

using json = nlohmann::json;

namespace {

template <typename Fn>
void for_each_jsonl(const std::filesystem::path& path, Fn&& fn) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string(), ": cannot open");
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = cat(path.string(), ":", number);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      fail(where, ": malformed JSON (", e.what(), ")");
    }
    if (!j.is_object()) fail(where, ": expected a JSON object");
    fn(j, where, number);
  }
}

template <typename T>
T field(const json& j, const char* name, const std::string& where) {
  auto it = j.find(name);
  if (it == j.end()) fail(where, ": missing field '", name, "'");
  if (!json_integers_fit<T>(*it)) fail(where, ": field '", name, "' must hold integers");
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    fail(where, ": field '", name, "' has the wrong type");
  }
}

}  // namespace

std::vector<Prompt> read_gsm8k(const std::filesystem::path& path) {
  std::vector<Prompt> out;
  for_each_jsonl(path, [&](const json& j, const std::string& where, int64_t line) {
    Prompt p;
    p.index = line - 1;
    p.question = field<std::string>(j, "question", where);
    if (j.contains("answer")) p.answer = field<std::string>(j, "answer", where);
    out.push_back(std::move(p));
  });
  if (out.empty()) fail(path.string(), ": no prompts");
  return out;
}

std::string prompt_text(const std::string& question) {
  return question + "\nPlease reason step by step, and put your final answer within \\boxed{}.";
}

json sample_to_json(const Sample& s) {
  return json{{"prompt_index", s.prompt_index},
              {"member", s.member},
              {"sample", s.sample},
              {"seed", s.seed},
              {"prompt", s.prompt},
              {"response", s.response},
              {"prompt_ids", s.prompt_ids},
              {"response_ids", s.response_ids}};
}

Sample sample_from_json(const json& j, const std::string& where) {
  Sample s;
  s.prompt_index = field<int64_t>(j, "prompt_index", where);
  s.member = field<int64_t>(j, "member", where);
  s.sample = field<int64_t>(j, "sample", where);
  s.seed = field<uint64_t>(j, "seed", where);
  // Optional text: json::value() would throw a bare type_error for a non-string (fuzz_jsonl).
  if (j.contains("prompt")) s.prompt = field<std::string>(j, "prompt", where);
  if (j.contains("response")) s.response = field<std::string>(j, "response", where);
  s.prompt_ids = field<std::vector<int64_t>>(j, "prompt_ids", where);
  s.response_ids = field<std::vector<int64_t>>(j, "response_ids", where);
  if (s.prompt_ids.empty()) fail(where, ": field 'prompt_ids' is empty");
  return s;
}

std::vector<Sample> read_samples(const std::filesystem::path& path) {
  std::vector<Sample> out;
  for_each_jsonl(path, [&](const json& j, const std::string& where, int64_t) {
    out.push_back(sample_from_json(j, where));
  });
  if (out.empty()) fail(path.string(), ": no samples");
  return out;
}

std::set<SampleKey> existing_sample_keys(const std::filesystem::path& file, bool* dropped) {
  namespace fs = std::filesystem;
  std::set<SampleKey> keys;
  if (!fs::exists(file)) return keys;
  std::string text;
  {
    std::ifstream in(file, std::ios::binary);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  size_t pos = 0, line_no = 0, good_end = 0;
  while (pos < text.size()) {
    const size_t nl = text.find('\n', pos);
    ++line_no;
    const bool last =
        nl == std::string::npos || text.find_first_not_of("\r\n", nl) == std::string::npos;
    const std::string line =
        text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    try {
      if (nl == std::string::npos) throw std::runtime_error("torn");
      auto s = sample_from_json(json::parse(line), cat(file.string(), ":", line_no));
      keys.emplace(s.prompt_index, s.member, s.sample);
      good_end = nl + 1;
    } catch (const std::exception& e) {
      if (!last)
        fail(file.string(), ":", line_no, ": malformed line in existing output (", e.what(), ")");
      *dropped = true;
      break;
    }
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  if (good_end < text.size()) fs::resize_file(file, good_end);
  return keys;
}

}  // namespace drafteu::distill
