#include "test_support.h"

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace drafteu::test {
namespace fs = std::filesystem;

static std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

fs::path shared_dir() {
  return env_or("DRAFTEU_SHARED", "../shared");
}

fs::path require_file(const fs::path& path) {
  if (!fs::exists(path))
    throw std::runtime_error("required test file is missing: " + path.string());
  return path;
}

fs::path stories260k_gguf() {
  return require_file(shared_dir() / "models/stories260K/stories260K.gguf");
}

fs::path llama3_tokenizer_json() {
  return require_file(env_or("DRAFTEU_LLAMA3_TOKENIZER", "test-assets/llama3/tokenizer.json"));
}

fs::path scratch_dir(const std::string& name) {
  fs::path dir =
      fs::path(env_or("DRAFTEU_SCRATCH", fs::temp_directory_path() / "drafteu-tests")) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string drafteu_bin() {
  return env_or("DRAFTEU_BIN", "drafteu");
}

static std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

CommandResult run_command(const std::string& command) {
  static int counter = 0;
  fs::path dir = fs::temp_directory_path();
  std::string tag = std::to_string(::getpid()) + "-" + std::to_string(counter++);
  fs::path out = dir / ("drafteu-cmd-" + tag + ".out");
  fs::path err = dir / ("drafteu-cmd-" + tag + ".err");
  std::string full = "(" + command + ") >'" + out.string() + "' 2>'" + err.string() + "'";
  int status = std::system(full.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  fs::remove(out);
  fs::remove(err);
  return r;
}

}  // namespace drafteu::test
