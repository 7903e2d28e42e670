// One error type for every user-facing failure: the message names the file, field or flag.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace drafteu {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates its arguments with operator<< (GCC 12 has no <format>).
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(args...));
}

}  // namespace drafteu
