// A Hugging Face checkpoint: one model.safetensors, or shards named by
// model.safetensors.index.json.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "model/io/safetensors.h"
#include "util/error.h"
#include "util/json.h"

namespace drafteu::io {
namespace fs = std::filesystem;

namespace {
constexpr const char* kSingle = "model.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";

// Shard file names in first-seen order, plus the weight_map itself.
struct Index {
  std::vector<std::string> shards;
  std::map<std::string, std::string> weight_map;
};

Index read_index(const fs::path& index_path) {
  const nlohmann::json j = parse_json(read_text_file(index_path), index_path.string());
  if (!j.is_object()) fail(index_path.string(), ": not a JSON object");
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object())
    fail(index_path.string(), ": field 'weight_map' is missing or not an object");
  Index idx;
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string() || shard.get_ref<const std::string&>().empty())
      fail(index_path.string(), ": weight_map entry for tensor '", tensor,
           "' is not a file name: ", json_preview(shard));
    const auto& s = shard.get_ref<const std::string&>();
    if (std::find(idx.shards.begin(), idx.shards.end(), s) == idx.shards.end())
      idx.shards.push_back(s);
    idx.weight_map[tensor] = s;
  }
  if (idx.shards.empty()) fail(index_path.string(), ": weight_map is empty");
  return idx;
}
}  // namespace

SafetensorsCheckpoint::SafetensorsCheckpoint(const fs::path& dir) : dir_(dir) {
  fs::path index_path;
  fs::path single;
  if (fs::is_regular_file(dir)) {  // also accept a direct path to the file or the index
    (dir.extension() == ".json" ? index_path : single) = dir;
  } else if (fs::is_regular_file(dir / kIndex)) {
    index_path = dir / kIndex;
  } else if (fs::is_regular_file(dir / kSingle)) {
    single = dir / kSingle;
  } else {
    fail(dir.string(), ": no ", kSingle, " or ", kIndex, " found");
  }

  Index idx;
  std::vector<fs::path> paths;
  if (!single.empty()) {
    paths.push_back(single);
  } else {
    idx = read_index(index_path);
    for (const auto& s : idx.shards) {
      fs::path p = index_path.parent_path() / s;
      if (!fs::is_regular_file(p)) {
        std::string example;
        for (const auto& [t, f] : idx.weight_map)
          if (f == s) {
            example = t;
            break;
          }
        fail(index_path.string(), ": shard '", s, "' (holding tensor '", example,
             "') is missing: ", p.string());
      }
      paths.push_back(p);
    }
  }

  // Fill files_ completely before taking pointers into it.
  files_.reserve(paths.size());
  for (const auto& p : paths) files_.emplace_back(p);

  std::map<std::string_view, size_t> owner;  // tensor -> index into files_
  for (size_t i = 0; i < files_.size(); ++i) {
    for (const auto& t : files_[i].tensors()) {
      auto [it, inserted] = owner.emplace(t.name, i);
      if (!inserted)
        fail(describe(), ": tensor '", t.name, "' appears twice, in ",
             files_[it->second].path().string(), " and ", files_[i].path().string());
      index_.emplace(t.name, &t);
    }
  }
  for (const auto& [tensor, shard] : idx.weight_map) {
    auto it = owner.find(tensor);
    if (it == owner.end() || files_[it->second].path() != index_path.parent_path() / shard)
      fail(index_path.string(), ": weight_map puts tensor '", tensor, "' in '", shard,
           "' but that shard does not contain it");
  }
}

const TensorView* SafetensorsCheckpoint::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorView& SafetensorsCheckpoint::get(std::string_view name) const {
  if (const TensorView* t = find(name)) return *t;
  fail(describe(), ": tensor '", name, "' not found");
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [name, t] : index_) out.push_back(name);
  return out;
}

std::string SafetensorsCheckpoint::describe() const {
  if (files_.size() == 1) return cat("checkpoint ", files_[0].path().string());
  return cat("checkpoint ", dir_.string(), " (", files_.size(), " shards)");
}

}  // namespace drafteu::io
