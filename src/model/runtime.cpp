#include "model/runtime.h"

#include <dlfcn.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace drafteu {

namespace {

std::string loaded_library_matching(const std::string& needle) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (std::filesystem::path(path).filename().string().find(needle) == std::string::npos) continue;
    std::error_code ec;
    auto real = std::filesystem::canonical(path, ec);
    return ec ? path : real.string();
  }
  return "";
}

}  // namespace

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  info.torch_version = TORCH_VERSION;
  info.blas_library = loaded_library_matching("libblas");
  if (info.blas_library.empty()) info.blas_library = loaded_library_matching("openblas");
  if (info.blas_library.empty()) info.blas_library = "(none found in /proc/self/maps)";
  using ConfigFn = char* (*)();
  if (auto fn = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config")))
    info.blas_config = fn();
  if (auto fn = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename")))
    info.blas_core = fn();
  info.threads = torch::get_num_threads();
  std::istringstream cfg(torch::show_config());
  std::string line;
  while (std::getline(cfg, line)) {
    auto pos = line.find("CPU capability usage:");
    if (pos != std::string::npos) info.cpu_capability = line.substr(pos + 22);
  }
  info.cuda_available = torch::cuda::is_available();
  return info;
}

int configure_threads(int requested) {
  int n = requested;
  if (n <= 0) {
    if (const char* env = std::getenv("DRAFTEU_THREADS")) n = std::atoi(env);
  }
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
  return torch::get_num_threads();
}

}  // namespace drafteu
