// The experiment's step cache: each step's outputs live in <work>/<step>-<hash of its key>/, where
// the key is the step's config and the keys of its inputs. A step is built in a temporary
// directory and renamed into place, so a killed run leaves no half-finished step, and a rerun
// reuses every finished one. build_directory_once is that mechanism alone; the testbed's
// directory (testbed-<key>, eval/testbed_models.h) is built through it too.
#pragma once
#include <exception>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace drafteu::eval {

// `dir` as it is when it holds `marker` (returns true: reused); else `build(tmp)` fills a temporary
// sibling that is renamed to `dir` (a concurrent run that finished first wins). `build` must write
// `marker` last.
bool build_directory_once(const std::filesystem::path& dir, const std::string& marker,
                          const std::function<void(const std::filesystem::path&)>& build);

// Thrown by StepCache::run once the step named by stop_after() is built or reused: the run ends
// there (a test hook, as the trainers' --stop-after; rerunning resumes at the next step).
struct StoppedAfterStep : std::exception {
  explicit StoppedAfterStep(std::string s) : step(std::move(s)) {}
  const char* what() const noexcept override { return step.c_str(); }
  std::string step;
};

struct StepInfo {
  std::string name, hash;
  std::filesystem::path dir;
  bool reused = false;
  double seconds = 0;  // build time (0 when reused)
};

class StepCache {
 public:
  // Removes the temporary directories of steps whose run was killed (their process is gone).
  StepCache(std::filesystem::path root, std::ostream* log, std::string stop_after = "");
  const std::filesystem::path& root() const { return root_; }
  // The step after which the run ends (the test hook); "" for none.
  const std::string& stop_after() const { return stop_after_; }

  // The finished directory of step `name` with `key`; `build(tmp_dir)` fills it when missing.
  // The manifest (key, seeds in it, timing, thread count, commit) is written by the cache.
  StepInfo run(const std::string& name, const nlohmann::json& key,
               const std::function<void(const std::filesystem::path&)>& build);

  const std::vector<StepInfo>& steps() const { return steps_; }
  nlohmann::json steps_json() const;

 private:
  std::filesystem::path root_;
  std::ostream* log_;
  std::string stop_after_;
  std::vector<StepInfo> steps_;
};

}  // namespace drafteu::eval
