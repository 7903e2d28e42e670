#include "model/runtime.h"

#include <dlfcn.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "model/kernels.h"

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

std::string openblas_corename() {
  using ConfigFn = char* (*)();
  auto fn = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return fn ? std::string(fn()) : std::string();
}

bool cpu_avx512() {
  // SkylakeX kernels use the F, BW, DQ and VL subsets.
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

bool cpu_avx2_fma() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return s;
}

}  // namespace

std::string better_openblas_coretype(const std::string& detected_core, bool cpu_avx512,
                                     bool cpu_avx2_fma, const char* user_setting) {
  if (user_setting && *user_setting) return "";
  if (detected_core.empty()) return "";  // not OpenBLAS
  const std::string core = lower(detected_core);
  const bool has_avx512_kernels =
      core == "skylakex" || core == "cooperlake" || core == "sapphirerapids";
  const bool has_avx2_kernels = has_avx512_kernels || core == "haswell" || core == "zen";
  if (cpu_avx512 && !has_avx512_kernels) return "SkylakeX";
  if (cpu_avx2_fma && !has_avx2_kernels) return "Haswell";
  return "";
}

void ensure_blas_kernels(char** argv) {
  if (std::getenv("DRAFTEU_BLAS_AUTO")) return;  // already re-executed once
  const std::string detected = openblas_corename();
  const std::string want = better_openblas_coretype(detected, cpu_avx512(), cpu_avx2_fma(),
                                                    std::getenv("OPENBLAS_CORETYPE"));
  if (want.empty()) return;
  setenv("OPENBLAS_CORETYPE", want.c_str(), 1);
  setenv("DRAFTEU_BLAS_AUTO", detected.c_str(), 1);
  execv("/proc/self/exe", argv);
  // exec failed: carry on with OpenBLAS's own kernels, and say so in doctor.
  unsetenv("OPENBLAS_CORETYPE");
}

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  info.torch_version = TORCH_VERSION;
  info.blas_library = loaded_library_matching("libblas");
  if (info.blas_library.empty()) info.blas_library = loaded_library_matching("openblas");
  if (info.blas_library.empty()) info.blas_library = "(none found in /proc/self/maps)";
  using ConfigFn = char* (*)();
  if (auto fn = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config")))
    info.blas_config = fn();
  info.blas_core = openblas_corename();
  info.cpu_simd = cpu_avx512() ? "AVX-512" : cpu_avx2_fma() ? "AVX2" : "SSE";
  info.fast_kernels_avx2 = kernels::uses_avx2();
  const char* user = std::getenv("OPENBLAS_CORETYPE");
  const char* automatic = std::getenv("DRAFTEU_BLAS_AUTO");
  if (info.blas_core.empty())
    info.blas_core_reason = "";
  else if (user && automatic)
    info.blas_core_reason = std::string("OPENBLAS_CORETYPE=") + user +
                            " set by drafteu: OpenBLAS picked " + automatic + " on a CPU with " +
                            info.cpu_simd;
  else if (user)
    info.blas_core_reason = std::string("OPENBLAS_CORETYPE=") + user + " set by the user";
  else
    info.blas_core_reason = "OpenBLAS's own CPU detection (" + info.cpu_simd + " CPU)";
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
