// drafteu experiment: the paper's evaluation end to end (see eval/experiment.h).
#include <cstdlib>
#include <iostream>

#include "cli/commands.h"
#include "eval/experiment.h"
#include "eval/experiment_config.h"
#include "eval/experiment_report.h"

namespace drafteu::cli {

void add_experiment_command(CLI::App& app, GlobalOptions&) {
  auto preset = std::make_shared<std::string>();
  auto config = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto work = std::make_shared<std::string>();
  auto model = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "experiment", "Run the paper's evaluation (EU fidelity, proxy robustness, detection, cost)");
  cmd->add_option("--preset", *preset,
                  "tiny | quick (<= 5 min) | full (<= 30 min) | stories260k (needs --model); "
                  "default quick")
      ->check(CLI::IsMember(eval::experiment_preset_names()));
  cmd->add_option("--config", *config, "JSON file overriding preset fields (e.g. real checkpoints)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", *out, "output directory (report.html, summary.md, results.json, ...)")
      ->required();
  cmd->add_option("--work", *work, "step cache (default: OUT/work)");
  cmd->add_option("--model", *model,
                  "the target checkpoint (models.target): a .gguf file or HF directory");
  auto stop_after = std::make_shared<std::string>();
  cmd->add_option("--stop-after", *stop_after, "end the run once step STEP is built (resume later)")
      ->group("");  // a test hook, as the trainers' --stop-after
  cmd->callback([=] {
    auto c = eval::load_experiment_config(*preset, *config);
    if (!model->empty()) {
      c.target_model = *model;
      c.json["models"]["target"] = *model;
    }
    eval::validate_experiment_config(c, config->empty() ? "preset " + c.preset : *config);
    const std::filesystem::path work_dir =
        work->empty() ? std::filesystem::path(*out) / "work" : std::filesystem::path(*work);
    json results;
    try {
      results = eval::run_experiment(c, *out, work_dir, &std::cerr, *stop_after);
    } catch (const eval::StoppedAfterStep& s) {
      std::cout << "stopped after step " << s.step << " (rerun to continue)\n";
      return;
    }
    std::cout << eval::summary_markdown(results) << "Wrote " << *out << "/report.html, summary.md, "
              << "results.json (" << results["wall_seconds"].get<double>() << " s)\n";
  });
}

}  // namespace drafteu::cli
