// drafteu: per-token epistemic uncertainty of LLMs from their speculative-decoding drafts.
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/commands.h"
#include "model/runtime.h"
#include "util/error.h"

int main(int argc, char** argv) {
  drafteu::ensure_blas_kernels(argv);  // may re-execute with OPENBLAS_CORETYPE set
  CLI::App app{"drafteu: token-level epistemic uncertainty from draft models", "drafteu"};
  app.set_version_flag("--version", std::string("drafteu ") + DRAFTEU_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global flags (--threads) may also follow the subcommand
  drafteu::cli::GlobalOptions global;
  app.add_option("--threads", global.threads,
                 "CPU threads for libtorch (default: $DRAFTEU_THREADS or all cores)")
      ->check(CLI::NonNegativeNumber);
  app.parse_complete_callback([&] { drafteu::configure_threads(global.threads); });

  drafteu::cli::add_doctor_command(app, global);
  drafteu::cli::add_generate_command(app, global);
  drafteu::cli::add_tokenize_commands(app, global);
  drafteu::cli::add_convert_command(app, global);
  drafteu::cli::add_gen_data_command(app, global);
  drafteu::cli::add_train_proxy_command(app, global);
  drafteu::cli::add_train_drafts_command(app, global);
  drafteu::cli::add_train_baseline_command(app, global);
  drafteu::cli::add_serve_command(app, global);
  drafteu::cli::add_score_command(app, global);
  drafteu::cli::add_testbed_command(app, global);
  drafteu::cli::add_experiment_command(app, global);

  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const auto* sub : app.get_subcommands({})) known |= sub->check_name(argv[1]);
    if (!known) {
      std::cerr << "drafteu: error: unknown command '" << argv[1] << "' (see drafteu --help)\n";
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const drafteu::Error& e) {
    std::cerr << "drafteu: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "drafteu: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "drafteu: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
