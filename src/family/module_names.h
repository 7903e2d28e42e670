// PEFT's rule for naming adapted modules, on plain names (torch-free: the adapter-file reader
// and the config validators use it without a model).
#pragma once
#include <string>
#include <vector>

namespace drafteu {

// True when `module` is `suffix` or ends with "." + suffix (PEFT's rule for target_modules).
bool module_matches(const std::string& module, const std::string& suffix);

// The names among `names` matching any suffix, sorted. Throws drafteu::Error naming `what` when
// a suffix matches no name.
std::vector<std::string> match_module_names(const std::vector<std::string>& names,
                                            const std::vector<std::string>& suffixes,
                                            const std::string& what);

}  // namespace drafteu
