#include "distill/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "family/peft.h"
#include "util/error.h"
#include "util/file.h"

namespace drafteu::distill {

namespace fs = std::filesystem;

namespace {

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

// Checkpoint directories in step order (temporaries excluded).
std::vector<fs::path> checkpoint_dirs(const fs::path& root) {
  std::vector<fs::path> out;
  if (!fs::exists(root)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    const auto name = e.path().filename().string();
    if (e.is_directory() && name.rfind("step-", 0) == 0 && name.find('.') == std::string::npos)
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

void save_checkpoint(const fs::path& out, int64_t step, const LoraAdapterImpl& adapter,
                     torch::optim::Optimizer& optimizer, const nlohmann::json& info, int64_t keep) {
  const fs::path root = out / "checkpoints";
  const std::string name = step_name(step);
  const fs::path final_dir = root / name, tmp = root / (name + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  save_peft_adapter(adapter, tmp);
  std::vector<torch::Tensor> params;
  for (const auto& p : adapter.parameters()) params.push_back(p.detach());
  torch::save(params, (tmp / "params.pt").string());
  torch::save(optimizer, (tmp / "optimizer.pt").string());
  auto state = info;
  state["step"] = step;
  write_file_atomic(tmp / "trainer_state.json", state.dump(2) + "\n");
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  write_file_atomic(root / "latest", name + "\n");
  auto dirs = checkpoint_dirs(root);
  const auto k = static_cast<size_t>(std::max<int64_t>(keep, 1));
  for (size_t i = 0; i + k < dirs.size(); ++i)
    if (dirs[i] != final_dir) fs::remove_all(dirs[i]);
}

std::optional<CheckpointState> load_latest_checkpoint(const fs::path& out, LoraAdapterImpl& adapter,
                                                      torch::optim::Optimizer& optimizer) {
  const fs::path root = out / "checkpoints";
  if (fs::exists(root))  // leftovers of a save that was killed midway
    for (const auto& e : fs::directory_iterator(root))
      if (e.path().extension() == ".tmp") fs::remove_all(e.path());
  if (!fs::exists(root / "latest")) return std::nullopt;
  std::string name = read_text_file(root / "latest");
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
  const fs::path dir = root / name;
  if (!fs::is_directory(dir)) fail((root / "latest").string(), ": names missing checkpoint ", name);
  std::vector<torch::Tensor> saved;
  torch::load(saved, (dir / "params.pt").string());
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
      params[i].copy_(saved[i]);
    }
  }
  torch::load(optimizer, (dir / "optimizer.pt").string());
  CheckpointState st;
  st.info = nlohmann::json::parse(read_text_file(dir / "trainer_state.json"));
  st.step = st.info.at("step").get<int64_t>();
  return st;
}

}  // namespace drafteu::distill
