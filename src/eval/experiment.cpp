#include "eval/experiment.h"

#include <chrono>
#include <functional>
#include <memory>
#include <ostream>
#include <tuple>

#include "eval/experiment_cost.h"
#include "eval/experiment_detection.h"
#include "eval/experiment_fidelity.h"
#include "eval/experiment_methods.h"
#include "eval/experiment_proxy.h"
#include "eval/experiment_regime.h"
#include "eval/experiment_report.h"
#include "eval/experiment_train.h"
#include "util/file.h"

namespace drafteu::eval {

namespace fs = std::filesystem;
using json = nlohmann::json;

json run_experiment(const ExperimentConfig& c, const fs::path& out, const fs::path& work,
                    std::ostream* log, const std::string& stop_after) {
  const auto t0 = std::chrono::steady_clock::now();
  require_gnuplot();  // fail before any work, not after it
  fs::create_directories(out);
  StepCache cache(work, log, stop_after);
  const TrainedModels trained = prepare_models(c, cache, log);

  // Models load only when an evaluation step has to run: a fully cached rerun never loads them.
  std::unique_ptr<MethodModels> models;
  auto get = [&]() -> MethodModels& {
    if (!models) models = std::make_unique<MethodModels>(c, trained);
    return *models;
  };
  const json common = {{"trained", trained.key},
                       {"seed", c.seed},
                       {"family", c.json.at("family")},
                       {"max_new_tokens", c.max_new_tokens}};
  auto section = [&](const std::string& name, const json& key,
                     const std::function<void(const fs::path&)>& build) {
    const auto step = cache.run(name, {{"common", common}, {"config", key}}, build);
    return std::pair{step.dir, json::parse(read_text_file(step.dir / "results.json"))};
  };
  const auto [regime_dir, regime] = section("regime", {{"members", c.members}},
                                            [&](const fs::path& d) { run_regime(c, get(), d); });
  const auto [fid_dir, fidelity] =
      section("fidelity", c.json.at("fidelity"),
              [&](const fs::path& d) { run_fidelity(c, get(), d, log); });
  json proxy_key = c.json.at("proxy");
  proxy_key["centre_offset"] = true;  // steps cached before the offset was measured rerun
  const auto [proxy_dir, proxy] =
      section("proxy-robustness", proxy_key, [&](const fs::path& d) { run_proxy(c, get(), d); });
  // Detection needs right and wrong answers, and its cost table compares detectors: neither
  // runs on unlabelled tasks (stories).
  fs::path det_dir;
  json detection = json::object(), cost = json::object();
  if (c.has_labels()) {
    // Detection and cost score the fidelity's draft families: the settings that shape them are
    // part of their keys.
    const json drafts_key = {{"draft_sigma", c.draft_sigma}, {"group_drafts", c.group_drafts}};
    std::tie(det_dir, detection) = section("detection", {c.json.at("detection"), drafts_key},
                                           [&](const fs::path& d) { run_detection(c, get(), d); });
    cost = section("cost", {c.json.at("cost"), c.json.at("detection"), drafts_key},
                   [&](const fs::path& d) { run_cost(c, get(), d); })
               .second;
  }

  json results;
  results["preset"] = c.preset;
  results["task"] = c.task;
  results["config"] = c.json;
  results["testbed"] = {{"target_accuracy", trained.target_accuracy},
                        {"draft_accuracy", trained.draft_accuracy},
                        {"target", trained.target_dir.string()},
                        {"draft", trained.draft_dir.string()}};
  if (c.stories_task())
    results["stories"] =
        json::parse(read_text_file(trained.target_dir.parent_path() / "stories.json"));
  results["eu_fidelity"] = fidelity.at("methods");
  results["eu_fidelity_k6"] = fidelity.at("k6");
  results["regime"] = regime;
  results["regime"]["true_eu_mean"] = fidelity.at("true_eu_mean");
  results["regime"]["draft_kl_to_target"] = fidelity.at("draft_kl_to_target");
  results["regime"]["sigma"] = c.sigma;
  results["regime"]["sigma_parametrization"] =
      c.relative_noise ? "relative: ΔW entries ~ sigma·rms(W), ‖ΔW‖/‖W‖ ≈ sigma"
                       : "absolute: A, B entries ~ N(0, sigma²)";
  results["budgets"] = {{"proxy", trained.proxy_train},
                        {"drafts", trained.draft_train},
                        {"baselines", trained.baseline_train}};
  results["proxy"] = proxy;
  results["proxy"].erase("centre_offset");
  results["proxy_centre_offset"] = proxy.at("centre_offset");
  results["proxy_truth"] = {{"kind", c.proxy_truth}, {"members", proxy_truth(c).members}};
  results["detection"] = detection;
  results["cost"] = cost;
  results["steps"] = cache.steps_json();
  results["work_dir"] = fs::absolute(work).string();
  results["wall_seconds"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  write_file_atomic(out / "tokens_fidelity.jsonl", read_text_file(fid_dir / "tokens.jsonl"));
  if (c.has_labels())
    write_file_atomic(out / "tokens_detection.jsonl", read_text_file(det_dir / "answers.jsonl"));
  write_report(results, out, c.has_labels() ? det_dir / "answers.jsonl" : fs::path());
  write_file_atomic(out / "results.json", results.dump(2) + "\n");
  return results;
}

}  // namespace drafteu::eval
