#include "family/module_names.h"

#include <algorithm>
#include <set>

#include "util/error.h"

namespace drafteu {

bool module_matches(const std::string& module, const std::string& suffix) {
  if (module == suffix) return true;
  return module.size() > suffix.size() &&
         module.compare(module.size() - suffix.size(), suffix.size(), suffix) == 0 &&
         module[module.size() - suffix.size() - 1] == '.';
}

std::vector<std::string> match_module_names(const std::vector<std::string>& names,
                                            const std::vector<std::string>& suffixes,
                                            const std::string& what) {
  if (suffixes.empty()) fail(what, ": no target modules given");
  const bool has_head = std::find(names.begin(), names.end(), "lm_head") != names.end();
  std::set<std::string> out;
  for (const auto& s : suffixes) {
    bool any = false;
    for (const auto& n : names) {
      if (module_matches(n, s)) out.insert(n), any = true;
    }
    if (!any)
      fail(what, ": target module '", s,
           "' matches no linear layer of the model (known: q_proj, k_proj, v_proj, o_proj, "
           "gate_proj, up_proj, down_proj",
           has_head ? ", lm_head" : "", ")");
  }
  return {out.begin(), out.end()};
}

}  // namespace drafteu
