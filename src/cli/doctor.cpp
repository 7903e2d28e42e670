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
    std::cout << "threads        " << info.threads << "\n"
              << "CPU capability " << info.cpu_capability << "\n"
              << "CUDA           " << (info.cuda_available ? "available" : "not available") << "\n";
    bool reference_blas = info.blas_library.find("/blas/") != std::string::npos;
    if (reference_blas)
      std::cout << "warning: the reference BLAS is loaded (10-25x slower); run tools/setup.sh or "
                   "update-alternatives --set libblas.so.3-<arch> to OpenBLAS (openmp)\n";
  });
}

}  // namespace drafteu::cli
