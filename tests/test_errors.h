// The message of the drafteu::Error a call throws, for tests that check bad-input messages.
#pragma once
#include <functional>
#include <string>

#include "util/error.h"

namespace drafteu::test {

// What `f` throws as drafteu::Error, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace drafteu::test
