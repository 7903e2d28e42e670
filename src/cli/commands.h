// The CLI's subcommands: each file registers one, parses its flags and calls the library.
#pragma once
#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

namespace drafteu {
struct LoadedModel;
struct GenerateOptions;
struct DraftSpec;
}  // namespace drafteu

namespace drafteu::cli {

struct GlobalOptions {
  int threads = 0;  // 0 = $DRAFTEU_THREADS or all cores
};

void add_doctor_command(CLI::App& app, GlobalOptions& global);
void add_generate_command(CLI::App& app, GlobalOptions& global);
void add_tokenize_commands(CLI::App& app, GlobalOptions& global);
void add_convert_command(CLI::App& app, GlobalOptions& global);
void add_gen_data_command(CLI::App& app, GlobalOptions& global);
void add_train_proxy_command(CLI::App& app, GlobalOptions& global);
void add_train_drafts_command(CLI::App& app, GlobalOptions& global);
void add_train_baseline_command(CLI::App& app, GlobalOptions& global);
void add_serve_command(CLI::App& app, GlobalOptions& global);

// Draft flags (--drafts, --draft, --draft-family, --draft-noise/-sigma/-rank/-seed) shared by
// generate, score and serve, with DraftSpec's defaults (draft_flags.cpp); `drafts_csv` receives
// --drafts, which take_draft_paths splits into `spec`.
void add_draft_flags(CLI::App* cmd, DraftSpec& spec, std::string& drafts_csv);
void take_draft_paths(DraftSpec& spec, const std::string& drafts_csv);

// Speculative decoding flags (the draft flags, --gamma, ...) shared by generate and serve
// (serve.cpp).
struct SpeculativeFlags;
std::shared_ptr<SpeculativeFlags> add_speculative_flags(CLI::App* cmd, bool serving);
bool speculative_requested(const SpeculativeFlags& flags);
void run_speculative_generate(SpeculativeFlags& flags, const LoadedModel& target,
                              const std::vector<int64_t>& prompt, const GenerateOptions& options,
                              bool json);
void add_score_command(CLI::App& app, GlobalOptions& global);
void add_testbed_command(CLI::App& app, GlobalOptions& global);
void add_experiment_command(CLI::App& app, GlobalOptions& global);

}  // namespace drafteu::cli
