#include "eval/experiment_cache.h"

#include <ATen/Parallel.h>
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

bool build_directory_once(const fs::path& dir, const std::string& marker,
                          const std::function<void(const fs::path&)>& build) {
  if (fs::exists(dir / marker)) return true;
  const fs::path tmp =
      dir.parent_path() / (".tmp-" + dir.filename().string() + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    build(tmp);
    std::error_code ec;
    fs::rename(tmp, dir, ec);
    if (ec) {  // another run finished the same directory first: keep theirs
      fs::remove_all(tmp);
      if (!fs::exists(dir / marker))
        fail("cannot move ", tmp.string(), " to ", dir.string(), ": ", ec.message());
    }
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  return false;
}

StepInfo StepCache::run(const std::string& name, const nlohmann::json& key,
                        const std::function<void(const fs::path&)>& build) {
  StepInfo info;
  info.name = name;
  const nlohmann::json salted{{"format", kStepFormatVersion}, {"key", key}};
  info.hash = distill::sha256_hex(salted.dump()).substr(0, 16);
  info.dir = root_ / (name + "-" + info.hash);
  info.reused = build_directory_once(info.dir, "manifest.json", [&](const fs::path& tmp) {
    if (log_) *log_ << "[experiment] " << name << ": running" << std::endl;
    const auto t0 = std::chrono::steady_clock::now();
    build(tmp);
    info.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // The thread count is not part of the key, and the manifest records it: libtorch's and
    // BLAS's multi-threaded kernels may sum in another order on another count, so a training
    // step's floats can differ in their last bits between counts (~1e-9 relative in the tiny
    // preset's results), never between two runs on one count.
    distill::write_manifest(tmp, {{"step", name},
                                  {"key", key},
                                  {"seconds", info.seconds},
                                  {"threads", at::get_num_threads()}});
  });
  if (log_ && info.reused)
    *log_ << "[experiment] " << name << ": reusing " << info.dir.string() << std::endl;
  else if (log_)
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
