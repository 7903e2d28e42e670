#include "util/json.h"

#include "util/error.h"
#include "util/file.h"

namespace drafteu {

void check_json_depth(std::string_view text, const std::string& source, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      if (ch == '\\')
        ++i;  // the escaped character cannot end the string
      else if (ch == '"')
        in_string = false;
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      if (++depth > max_depth)
        fail(source, ": JSON nests deeper than ", max_depth, " levels (at byte ", i, ")");
    } else if (ch == ']' || ch == '}') {
      --depth;  // unbalanced input is the parser's to reject
    }
  }
}

nlohmann::json parse_json(std::string_view text, const std::string& source) {
  check_json_depth(text, source);
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    fail(source, ": not valid JSON (", e.what(), ")");
  }
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) fail(path.string(), ": no such file");
  nlohmann::json j = parse_json(read_text_file(path), path.string());
  if (!j.is_object()) fail(path.string(), ": expected a JSON object");
  return j;
}

std::string json_preview(const nlohmann::json& j) {
  if (j.is_array()) return cat("an array of ", j.size(), " elements");
  if (j.is_object()) return cat("an object of ", j.size(), " keys");
  std::string s = dump_json(j);
  constexpr size_t kMax = 60;
  if (s.size() > kMax) s = s.substr(0, kMax) + "...";
  return s;
}

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void check_fields(const nlohmann::json& j, const std::string& source,
                  std::initializer_list<const char*> known) {
  if (!j.is_object()) fail(source, ": expected a JSON object");
  for (const auto& [key, _] : j.items()) {
    bool ok = false;
    for (const char* k : known) ok = ok || key == k;
    if (!ok) fail(source, ": unknown field '", key, "'");
  }
}

}  // namespace drafteu
