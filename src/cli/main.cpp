// drafteu: per-token epistemic uncertainty of LLMs from their speculative-decoding drafts.
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/commands.h"
#include "model/runtime.h"
#include "util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"drafteu: token-level epistemic uncertainty from draft models", "drafteu"};
  app.set_version_flag("--version", std::string("drafteu ") + DRAFTEU_VERSION);
  app.require_subcommand(1);
  drafteu::cli::GlobalOptions global;
  app.add_option("--threads", global.threads,
                 "CPU threads for libtorch (default: $DRAFTEU_THREADS or all cores)")
      ->check(CLI::NonNegativeNumber);
  app.parse_complete_callback([&] { drafteu::configure_threads(global.threads); });

  drafteu::cli::add_doctor_command(app, global);
  drafteu::cli::add_generate_command(app, global);
  drafteu::cli::add_tokenize_commands(app, global);
  drafteu::cli::add_convert_command(app, global);

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
