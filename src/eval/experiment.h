// `drafteu experiment`: the paper's evaluation end to end on the testbed (or real checkpoints):
// models and data, p_mix, draft families and baselines (cached steps), then EU fidelity, proxy
// robustness, hallucination detection and cost, written as results.json, CSV/JSON tables,
// per-token JSONL, summary.md and report.html.
#pragma once
#include <filesystem>
#include <iosfwd>
#include <string>

#include <nlohmann/json.hpp>

#include "eval/experiment_cache.h"
#include "eval/experiment_config.h"

namespace drafteu::eval {

// Runs (or reuses) every step under `work` and writes the outputs into `out`; returns results.
// With `stop_after` naming a step (a StepCache step, or "testbed"), throws StoppedAfterStep once
// that step is built or reused.
nlohmann::json run_experiment(const ExperimentConfig& config, const std::filesystem::path& out,
                              const std::filesystem::path& work, std::ostream* log,
                              const std::string& stop_after = "");

}  // namespace drafteu::eval
