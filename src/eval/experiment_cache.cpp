#include "eval/experiment_cache.h"

#include <unistd.h>

#include <chrono>
#include <iomanip>
#include <ostream>

#include "distill/manifest.h"
#include "util/error.h"
#include "util/file.h"

namespace drafteu::eval {

namespace fs = std::filesystem;

namespace {
// Part of every step's hash: bump it when a change to the code changes what a step produces, so
// that caches written by older code are not reused.
constexpr int kStepFormatVersion = 2;
}  // namespace

StepCache::StepCache(fs::path root, std::ostream* log, std::string stop_after)
    : root_(std::move(root)), log_(log), stop_after_(std::move(stop_after)) {
  fs::create_directories(root_);
  remove_stale_temp_dirs(root_);  // ".tmp-<step>-<hash>-<pid>" of killed runs
}

StepInfo StepCache::run(const std::string& name, const nlohmann::json& key,
                        const std::function<void(const fs::path&)>& build) {
  StepInfo info;
  info.name = name;
  const nlohmann::json salted{{"format", kStepFormatVersion}, {"key", key}};
  info.hash = distill::sha256_hex(salted.dump()).substr(0, 16);
  info.dir = root_ / (name + "-" + info.hash);
  if (fs::exists(info.dir / "manifest.json")) {
    info.reused = true;
    if (log_) *log_ << "[experiment] " << name << ": reusing " << info.dir.string() << std::endl;
    steps_.push_back(info);
    if (name == stop_after_) throw StoppedAfterStep(name);
    return info;
  }
  if (log_) *log_ << "[experiment] " << name << ": running" << std::endl;
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path tmp =
      root_ / (".tmp-" + name + "-" + info.hash + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    build(tmp);
    info.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    distill::write_manifest(tmp, {{"step", name}, {"key", key}, {"seconds", info.seconds}});
    std::error_code ec;
    fs::rename(tmp, info.dir, ec);
    if (ec) {  // another run finished the same step first: keep theirs
      fs::remove_all(tmp);
      if (!fs::exists(info.dir / "manifest.json"))
        fail("experiment: cannot move ", tmp.string(), " to ", info.dir.string(), ": ",
             ec.message());
    }
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  if (log_)
    *log_ << "[experiment] " << name << ": done in " << std::fixed << std::setprecision(1)
          << info.seconds << "s" << std::endl;
  steps_.push_back(info);
  if (name == stop_after_) throw StoppedAfterStep(name);
  return info;
}

nlohmann::json StepCache::steps_json() const {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& s : steps_)
    a.push_back({{"step", s.name},
                 {"hash", s.hash},
                 {"dir", s.dir.string()},
                 {"reused", s.reused},
                 {"seconds", s.seconds}});
  return a;
}

}  // namespace drafteu::eval
