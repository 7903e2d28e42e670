// The fuzz harnesses as a plain test: every harness runs every file of its checked-in corpus
// (tests/fuzz/corpus/<target>/). Built by any compiler; each harness source is compiled with its
// LLVMFuzzerTestOneInput renamed to fuzz_<target> (see tests/fuzz.cmake).
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#define DRAFTEU_FUZZ_TARGET(name) extern "C" int fuzz_##name(const uint8_t*, size_t);
#include "fuzz_targets.inc"
#undef DRAFTEU_FUZZ_TARGET

namespace {
struct Target {
  const char* name;
  int (*run)(const uint8_t*, size_t);
};
const Target kTargets[] = {
#define DRAFTEU_FUZZ_TARGET(name) {#name, fuzz_##name},
#include "fuzz_targets.inc"
#undef DRAFTEU_FUZZ_TARGET
};
}  // namespace

// argv[1]: the corpus root. A crash aborts the process (ctest reports it); an uncaught
// exception other than drafteu::Error does too, through std::terminate.
int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_ROOT\n", argv[0]);
    return 2;
  }
  namespace fs = std::filesystem;
  int total = 0;
  for (const Target& t : kTargets) {
    const fs::path dir = fs::path(argv[1]) / t.name;
    if (!fs::is_directory(dir)) {
      std::fprintf(stderr, "%s: no corpus directory\n", dir.c_str());
      return 1;
    }
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file()) files.push_back(e.path());
    if (files.empty()) {
      std::fprintf(stderr, "%s: empty corpus\n", dir.c_str());
      return 1;
    }
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      const std::string bytes(std::istreambuf_iterator<char>(in), {});
      t.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    }
    std::printf("%-16s %zu inputs\n", t.name, files.size());
    total += static_cast<int>(files.size());
  }
  std::printf("replayed %d inputs, no crash\n", total);
  return 0;
}
