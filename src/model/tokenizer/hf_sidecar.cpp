#include "model/tokenizer/hf_sidecar.h"

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace drafteu::tok {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
json parse_file(const fs::path& p) {
  return parse_json(read_text_file(p), p.string());
}

// A token name is a string or an AddedToken object {"content": ...}; null means none.
std::optional<std::string> token_name(const json& cfg, const char* key, const fs::path& p) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  fail(p.string(), ": ", key, ": expected a string or an object with \"content\"");
}

std::optional<bool> flag(const json& cfg, const char* key, const fs::path& p) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) fail(p.string(), ": ", key, ": expected true or false");
  return it->get<bool>();
}

std::string chat_template(const json& cfg, const fs::path& p) {
  auto it = cfg.find("chat_template");
  if (it == cfg.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {  // named templates: use "default"
    for (const json& t : *it)
      if (t.is_object() && t.value("name", "") == "default" && t.contains("template") &&
          t["template"].is_string())
        return t["template"].get<std::string>();
    return {};
  }
  fail(p.string(), ": chat_template: expected a string or a list of {name, template}");
}

int32_t to_id(const json& v, const fs::path& p) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
    fail(p.string(), ": eos_token_id: expected a non-negative integer or a list of them");
  return static_cast<int32_t>(v.get<int64_t>());
}
}  // namespace

HfSidecar read_hf_sidecar(const fs::path& dir) {
  HfSidecar s;
  s.config_path = dir / "tokenizer_config.json";
  s.generation_path = dir / "generation_config.json";
  if (fs::is_regular_file(s.config_path)) {
    const json cfg = parse_file(s.config_path);
    if (!cfg.is_object()) fail(s.config_path.string(), ": expected a JSON object");
    s.bos_token = token_name(cfg, "bos_token", s.config_path);
    s.eos_token = token_name(cfg, "eos_token", s.config_path);
    s.unk_token = token_name(cfg, "unk_token", s.config_path);
    s.pad_token = token_name(cfg, "pad_token", s.config_path);
    s.add_bos = flag(cfg, "add_bos_token", s.config_path);
    s.add_eos = flag(cfg, "add_eos_token", s.config_path);
    s.chat_template = chat_template(cfg, s.config_path);
  }
  if (fs::is_regular_file(s.generation_path)) {
    const json gen = parse_file(s.generation_path);
    if (!gen.is_object()) fail(s.generation_path.string(), ": expected a JSON object");
    auto it = gen.find("eos_token_id");
    if (it != gen.end() && !it->is_null()) {
      std::vector<int32_t> ids;
      if (it->is_array()) {
        for (const json& v : *it) ids.push_back(to_id(v, s.generation_path));
      } else {
        ids.push_back(to_id(*it, s.generation_path));
      }
      s.generation_eos = std::move(ids);
    }
  }
  return s;
}

}  // namespace drafteu::tok
