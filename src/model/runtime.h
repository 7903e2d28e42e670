// What decides speed on this machine: libtorch version, the BLAS actually loaded, threads, SIMD.
#pragma once
#include <string>

namespace drafteu {

struct RuntimeInfo {
  std::string torch_version;
  std::string blas_library;  // resolved path of the loaded libblas (e.g. .../openblas-openmp/...)
  std::string blas_config;   // openblas_get_config() when OpenBLAS is loaded
  std::string blas_core;     // openblas_get_corename(): the kernels OpenBLAS picked for this CPU
  int threads = 1;
  std::string cpu_capability;  // ATen's SIMD kernels: DEFAULT, AVX2, AVX512
  bool cuda_available = false;
};

RuntimeInfo runtime_info();

// 0 = a sensible default: $DRAFTEU_THREADS, else the number of cores (libtorch defaults to 1
// here otherwise). Returns the count in force.
int configure_threads(int requested);

}  // namespace drafteu
