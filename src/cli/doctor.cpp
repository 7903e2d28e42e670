#include <iostream>

#include "cli/commands.h"
#include "model/runtime.h"

namespace drafteu::cli {

void add_doctor_command(CLI::App& app, GlobalOptions&) {
  auto* cmd =
      app.add_subcommand("doctor", "Print what decides speed here: libtorch, BLAS, threads, SIMD");
  cmd->callback([] {
    RuntimeInfo info = runtime_info();
    std::cout << "drafteu        " << DRAFTEU_VERSION << "\n"
              << "libtorch       " << info.torch_version << "\n"
              << "BLAS loaded    " << info.blas_library << "\n";
    if (!info.blas_config.empty()) std::cout << "BLAS config    " << info.blas_config << "\n";
    if (!info.blas_core.empty())
      std::cout << "BLAS kernels   " << info.blas_core << " (" << info.blas_core_reason << ")\n";
    std::cout << "CPU SIMD       " << info.cpu_simd << "\n"
              << "decode kernels " << (info.fast_kernels_avx2 ? "AVX2+FMA" : "portable")
              << " (batch-1 fast path, model/kernels)\n";
    std::cout << "threads        " << info.threads << "\n"
              << "CPU capability " << info.cpu_capability << "\n"
              << "CUDA           " << (info.cuda_available ? "available" : "not available") << "\n";
    // OpenBLAS falls back to its SSE3 (Prescott) kernels on CPUs newer than the build knows;
    // measured here (Zen 5, OpenBLAS 0.3.21): GEMM and GEMV ~4x slower than with SkylakeX kernels.
    if (info.blas_core == "Prescott" && info.cpu_simd != "SSE")
      std::cout << "warning: OpenBLAS uses its generic Prescott kernels on this " << info.cpu_simd
                << " CPU (~4x slower); unset OPENBLAS_CORETYPE to let drafteu pick, or set it "
                   "to Haswell or SkylakeX\n";
    bool reference_blas = info.blas_library.find("/blas/") != std::string::npos;
    if (reference_blas)
      std::cout << "warning: the reference BLAS is loaded (10-25x slower); run tools/setup.sh or "
                   "update-alternatives --set libblas.so.3-<arch> to OpenBLAS (openmp)\n";
  });
}

}  // namespace drafteu::cli
