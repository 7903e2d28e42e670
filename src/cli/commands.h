// The CLI's subcommands: each file registers one, parses its flags and calls the library.
#pragma once
#include <CLI/CLI.hpp>

#include <string>

namespace drafteu::cli {

struct GlobalOptions {
  int threads = 0;  // 0 = $DRAFTEU_THREADS or all cores
};

void add_doctor_command(CLI::App& app, GlobalOptions& global);
void add_generate_command(CLI::App& app, GlobalOptions& global);
void add_tokenize_commands(CLI::App& app, GlobalOptions& global);
void add_convert_command(CLI::App& app, GlobalOptions& global);

}  // namespace drafteu::cli
