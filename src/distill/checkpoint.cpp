#include "distill/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <vector>

#include "distill/manifest.h"
#include "family/peft.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace drafteu::distill {

namespace fs = std::filesystem;

namespace {

// Files of a checkpoint whose SHA-256 trainer_state.json records and a load verifies.
const char* const kCheckedFiles[] = {"params.pt", "optimizer.pt", kPeftConfigFile,
                                     kPeftWeightsFile};

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

// "step-" and 8+ digits: the only names `latest` may hold (never a path out of the run).
bool is_step_name(const std::string& name) {
  return name.size() >= 13 && name.size() <= 24 && name.rfind("step-", 0) == 0 &&
         std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Checkpoint directories in step order (temporaries excluded).
std::vector<fs::path> checkpoint_dirs(const fs::path& root) {
  std::vector<fs::path> out;
  if (!fs::exists(root)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    const auto name = e.path().filename().string();
    if (e.is_directory() && is_step_name(name)) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// torch::save into memory, then one checked atomic write: torch's file writer throws from a
// destructor on a full disk (std::terminate) and leaves a partial file.
template <typename T>
void save_torch(const T& value, const fs::path& file) {
  std::ostringstream bytes;
  torch::save(value, bytes);
  write_file_atomic(file, bytes.str());
}

template <typename T>
void load_torch(T& value, const fs::path& file) {
  try {
    torch::load(value, file.string());
  } catch (const c10::Error& e) {
    fail(file.string(), ": cannot read this checkpoint file: ", e.what_without_backtrace());
  }
}

// The optimizer's state in parameter order, under this marker. libtorch's own serialization
// (torch::save of an optimizer) keys each parameter's state by its TensorImpl's address and writes
// the states in hash-map order: the same state saved by two processes differed byte for byte, so a
// resumed experiment step never matched an uninterrupted one. This format is a function of the
// state alone. Checkpoints without the marker are read as libtorch wrote them.
constexpr const char* kAdamWFormat = "drafteu/adamw_state";

std::string state_key(const torch::Tensor& p) {
  return c10::guts::to_string(p.unsafeGetTensorImpl());
}

void save_optimizer(torch::optim::Optimizer& optimizer, const fs::path& file) {
  if (!dynamic_cast<torch::optim::AdamW*>(&optimizer)) return save_torch(optimizer, file);
  torch::serialize::OutputArchive a;
  a.write(kAdamWFormat, torch::tensor(int64_t{1}), /*is_buffer=*/true);
  const auto& groups = optimizer.param_groups();
  a.write("groups", torch::tensor(static_cast<int64_t>(groups.size())), true);
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::string group = "group/" + std::to_string(g) + "/";
    const auto& params = groups[g].params();
    a.write(group + "size", torch::tensor(static_cast<int64_t>(params.size())), true);
    torch::serialize::OutputArchive options(a.compilation_unit());
    static_cast<const torch::optim::AdamWOptions&>(groups[g].options()).serialize(options);
    a.write(group + "options", options);
    for (size_t j = 0; j < params.size(); ++j) {
      const auto it = optimizer.state().find(state_key(params[j]));
      if (it == optimizer.state().end()) continue;  // not stepped yet
      const auto& st = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      const std::string key = group + std::to_string(j) + "/";
      a.write(key + "step", torch::tensor(st.step()), true);
      a.write(key + "exp_avg", st.exp_avg(), true);
      a.write(key + "exp_avg_sq", st.exp_avg_sq(), true);
      if (st.max_exp_avg_sq().defined()) a.write(key + "max_exp_avg_sq", st.max_exp_avg_sq(), true);
    }
  }
  std::ostringstream bytes;
  a.save_to(bytes);
  write_file_atomic(file, bytes.str());
}

void load_optimizer(torch::optim::Optimizer& optimizer, const fs::path& file) {
  torch::serialize::InputArchive a;
  torch::Tensor marker;
  try {
    a.load_from(file.string());
    if (!dynamic_cast<torch::optim::AdamW*>(&optimizer) || !a.try_read(kAdamWFormat, marker, true))
      return load_torch(optimizer, file);  // written by libtorch (older checkpoints)
    auto& groups = optimizer.param_groups();
    auto count = [&](const std::string& key) {
      torch::Tensor t;
      a.read(key, t, true);
      return t.item<int64_t>();
    };
    if (count("groups") != static_cast<int64_t>(groups.size()))
      fail(file.string(), ": holds ", count("groups"), " parameter groups, the run has ",
           groups.size());
    for (size_t g = 0; g < groups.size(); ++g) {
      const std::string group = "group/" + std::to_string(g) + "/";
      const auto& params = groups[g].params();
      if (count(group + "size") != static_cast<int64_t>(params.size()))
        fail(file.string(), ": group ", g, " holds ", count(group + "size"),
             " parameters, the run has ", params.size(), " (different LoRA config?)");
      torch::serialize::InputArchive options;
      a.read(group + "options", options);
      static_cast<torch::optim::AdamWOptions&>(groups[g].options()).serialize(options);
      for (size_t j = 0; j < params.size(); ++j) {
        const std::string key = group + std::to_string(j) + "/";
        torch::Tensor step, m, v, vmax;
        if (!a.try_read(key + "step", step, true)) continue;
        a.read(key + "exp_avg", m, true);
        a.read(key + "exp_avg_sq", v, true);
        if (m.sizes() != params[j].sizes() || v.sizes() != params[j].sizes())
          fail(file.string(), ": the state of parameter ", j, " has shape ", m.sizes(),
               ", expected ", params[j].sizes());
        auto st = std::make_unique<torch::optim::AdamWParamState>();
        st->step(step.item<int64_t>());
        st->exp_avg(m);
        st->exp_avg_sq(v);
        if (a.try_read(key + "max_exp_avg_sq", vmax, true)) st->max_exp_avg_sq(vmax);
        optimizer.state()[state_key(params[j])] = std::move(st);
      }
    }
  } catch (const c10::Error& e) {
    fail(file.string(), ": cannot read this checkpoint file: ", e.what_without_backtrace());
  }
}

}  // namespace

void save_checkpoint(const fs::path& out, int64_t step, const LoraAdapterImpl& adapter,
                     torch::optim::Optimizer& optimizer, const nlohmann::json& info, int64_t keep) {
  const fs::path root = out / "checkpoints";
  const std::string name = step_name(step);
  const fs::path final_dir = root / name, tmp = root / (name + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    save_peft_adapter(adapter, tmp);
    std::vector<torch::Tensor> params;
    for (const auto& p : adapter.parameters()) params.push_back(p.detach());
    save_torch(params, tmp / "params.pt");
    save_optimizer(optimizer, tmp / "optimizer.pt");
    auto state = info;
    state["step"] = step;
    for (const char* f : kCheckedFiles) state["sha256"][f] = sha256_file(tmp / f);
    write_file_atomic(tmp / "trainer_state.json", state.dump(2) + "\n");
  } catch (...) {  // a full disk: leave no half-written checkpoint; `latest` keeps the last one
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  write_file_atomic(root / "latest", name + "\n");
  auto dirs = checkpoint_dirs(root);
  const auto k = static_cast<size_t>(std::max<int64_t>(keep, 1));
  for (size_t i = 0; i + k < dirs.size(); ++i)
    if (dirs[i] != final_dir) fs::remove_all(dirs[i]);
}

CheckpointState read_checkpoint_state(const fs::path& dir) {
  const fs::path file = dir / "trainer_state.json";
  CheckpointState st;
  st.info = read_json_file(file);
  auto step = st.info.find("step");
  if (step == st.info.end() || !step->is_number_integer() || step->get<int64_t>() < 1)
    fail(file.string(), ": field 'step' must be a positive integer, got ",
         step == st.info.end() ? std::string("nothing") : json_preview(*step));
  st.step = step->get<int64_t>();
  if (dir.filename().string() != step_name(st.step))
    fail(file.string(), ": field 'step' is ", st.step, " but the directory is ",
         dir.filename().string());
  auto sums = st.info.find("sha256");
  if (sums == st.info.end() || !sums->is_object())
    fail(file.string(), ": field 'sha256' (checksums of the checkpoint files) is missing");
  for (const char* f : kCheckedFiles) {
    auto want = sums->find(f);
    if (want == sums->end() || !want->is_string())
      fail(file.string(), ": field 'sha256' has no checksum for ", f);
    if (!fs::is_regular_file(dir / f)) fail((dir / f).string(), ": missing checkpoint file");
    if (sha256_file(dir / f) != want->get<std::string>())
      fail((dir / f).string(), ": checksum mismatch (the file is corrupt or was changed)");
  }
  return st;
}

std::optional<CheckpointState> load_latest_checkpoint(const fs::path& out, LoraAdapterImpl& adapter,
                                                      torch::optim::Optimizer& optimizer) {
  const fs::path root = out / "checkpoints";
  if (fs::exists(root))  // leftovers of a save that was killed midway
    for (const auto& e : fs::directory_iterator(root))
      if (e.path().extension() == ".tmp") fs::remove_all(e.path());
  const fs::path latest = root / "latest";
  if (!fs::exists(latest)) return std::nullopt;
  std::string name = read_text_file(latest);
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
  if (!is_step_name(name))
    fail(latest.string(), ": expected a checkpoint name like step-00000010, got '",
         name.substr(0, 60), "'");
  const fs::path dir = root / name;
  if (!fs::is_directory(dir)) fail(latest.string(), ": names missing checkpoint ", name);
  CheckpointState st = read_checkpoint_state(dir);  // verifies checksums before any torch::load
  std::vector<torch::Tensor> saved;
  load_torch(saved, dir / "params.pt");
  auto params = adapter.parameters();
  if (saved.size() != params.size())
    fail(dir.string(), ": holds ", saved.size(), " adapter tensors, the run has ", params.size(),
         " (different LoRA config?)");
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) {
      if (saved[i].sizes() != params[i].sizes())
        fail(dir.string(), ": adapter tensor ", i, " has shape ", saved[i].sizes(), ", expected ",
             params[i].sizes());
      if (!torch::isfinite(saved[i]).all().item<bool>())
        fail((dir / "params.pt").string(), ": adapter tensor ", i, " holds non-finite values");
      params[i].copy_(saved[i]);
    }
  }
  load_optimizer(optimizer, dir / "optimizer.pt");
  return st;
}

}  // namespace drafteu::distill
