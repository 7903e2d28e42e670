#include "util/json.h"

#include "util/error.h"
#include "util/file.h"

namespace drafteu {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) fail(path.string(), ": no such file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail(path.string(), ": malformed JSON (", e.what(), ")");
  }
  if (!j.is_object()) fail(path.string(), ": expected a JSON object");
  return j;
}

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace drafteu
