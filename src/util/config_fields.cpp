#include "util/config_fields.h"

#include "util/json.h"

namespace drafteu::config {

void fail_field(const Where& where, const std::string& what) {
  fail(where.source, ": field '", where.path, "' ", what);
}

std::string preview(const nlohmann::json& j) {
  return json_preview(j);
}

Check<std::string> one_of(std::vector<std::string> names) {
  return [names = std::move(names)](const std::string& v) {
    std::string list;
    for (const auto& n : names) {
      if (n == v) return std::string();
      list += (list.empty() ? "" : ", ") + n;
    }
    return "must be one of " + list;
  };
}

nlohmann::json overlay(nlohmann::json base, const nlohmann::json& patch) {
  if (!patch.is_object()) return patch;
  for (const auto& [key, value] : patch.items()) {
    if (value.is_null()) continue;
    auto it = base.find(key);
    if (it != base.end() && it->is_object() && value.is_object())
      *it = overlay(std::move(*it), value);
    else
      base[key] = value;
  }
  return base;
}

}  // namespace drafteu::config
