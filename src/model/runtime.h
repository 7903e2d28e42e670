// What decides speed on this machine: libtorch version, the BLAS actually loaded, threads, SIMD.
#pragma once
#include <string>

namespace drafteu {

struct RuntimeInfo {
  std::string torch_version;
  std::string blas_library;  // resolved path of the loaded libblas (e.g. .../openblas-openmp/...)
  std::string blas_config;   // openblas_get_config() when OpenBLAS is loaded
  std::string blas_core;     // openblas_get_corename(): the kernels OpenBLAS picked for this CPU
  std::string blas_core_reason;    // why those: OpenBLAS's own detection, the user, or drafteu
  std::string cpu_simd;            // "AVX-512", "AVX2" or "SSE" (what this CPU offers)
  bool fast_kernels_avx2 = false;  // model/kernels runs its AVX2+FMA variant
  int threads = 1;
  std::string cpu_capability;  // ATen's SIMD kernels: DEFAULT, AVX2, AVX512
  bool cuda_available = false;
};

RuntimeInfo runtime_info();

// The OPENBLAS_CORETYPE that gets this CPU the right kernels, or "" to keep OpenBLAS's own
// pick. OpenBLAS 0.3.21 does not know Zen 5 and falls back to SSE3 (Prescott) kernels, ~4x
// slower. A user's setting (user_setting non-null) always wins.
std::string better_openblas_coretype(const std::string& detected_core, bool cpu_avx512,
                                     bool cpu_avx2_fma, const char* user_setting);

// Call first thing in main(): OpenBLAS picks its kernels when it is loaded, before main, so when
// better_openblas_coretype() says so this re-executes the program with OPENBLAS_CORETYPE set
// (and DRAFTEU_BLAS_AUTO naming OpenBLAS's own pick, for doctor). Returns only if it did not.
void ensure_blas_kernels(char** argv);

// 0 = a sensible default: $DRAFTEU_THREADS, else the number of cores (libtorch defaults to 1
// here otherwise). Returns the count in force.
int configure_threads(int requested);

}  // namespace drafteu
