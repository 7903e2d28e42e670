#include "uncertainty/scoring/score_records.h"

#include <sstream>

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace drafteu {

namespace {

std::vector<int64_t> ids_field(const nlohmann::json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) fail(where, ": field '", key, "' is missing");
  if (!it->is_array()) fail(where, ": field '", key, "' must be an array of token ids");
  std::vector<int64_t> ids;
  for (const auto& v : *it) {
    if (!v.is_number_integer()) fail(where, ": field '", key, "' must hold integers");
    ids.push_back(v.get<int64_t>());
  }
  return ids;
}

}  // namespace

std::vector<ScoreRecord> read_score_records(const std::string& path, const Tokenizer* tok,
                                            int64_t vocab, int64_t context) {
  std::istringstream in(read_text_file(path));
  std::vector<ScoreRecord> records;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = path + ":" + std::to_string(line_no);
    if (line.size() > kMaxScoreLineBytes)
      fail(where, ": line of ", line.size(), " bytes exceeds the limit of ", kMaxScoreLineBytes);
    nlohmann::json j;
    try {
      check_json_depth(line, where);
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {  // also out_of_range: "1e999" (fuzz_jsonl)
      fail(where, ": not valid JSON");
    }
    if (!j.is_object()) fail(where, ": expected a JSON object");
    ScoreRecord r;
    if (j.contains("prompt_ids") || j.contains("response_ids")) {
      r.prompt = ids_field(j, "prompt_ids", where);
      r.response = ids_field(j, "response_ids", where);
    } else {
      if (!j.contains("prompt") || !j["prompt"].is_string())
        fail(where, ": field 'prompt' (string) is missing");
      if (!j.contains("response") || !j["response"].is_string())
        fail(where, ": field 'response' (string) is missing");
      if (!tok) fail(where, ": text records need a model with a tokenizer");
      auto p = tok->encode(j["prompt"].get<std::string>(), tok->bos_id().has_value());
      auto q = tok->encode(j["response"].get<std::string>(), false);
      r.prompt.assign(p.begin(), p.end());
      r.response.assign(q.begin(), q.end());
    }
    if (r.prompt.empty()) fail(where, ": the prompt encodes to no tokens (and there is no BOS)");
    for (const auto* ids : {&r.prompt, &r.response})
      for (auto id : *ids)
        if (id < 0 || id >= vocab)
          fail(where, ": token id ", id, " is outside the vocabulary (", vocab, ")");
    const auto length = static_cast<int64_t>(r.prompt.size() + r.response.size());
    if (length > context)
      fail(where, ": prompt and response are ", length,
           " tokens, longer than the models' context of ", context, " (max_position_embeddings)");
    records.push_back(std::move(r));
  }
  return records;
}

}  // namespace drafteu
