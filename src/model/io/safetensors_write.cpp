// Writing safetensors files and (optionally sharded) Hugging Face checkpoint directories.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "model/io/checked.h"
#include "model/io/safetensors.h"
#include "util/atomic_writer.h"
#include "util/error.h"

namespace drafteu::io {
namespace fs = std::filesystem;

namespace {

void validate(const fs::path& path, const std::vector<TensorToWrite>& tensors) {
  std::set<std::string_view> names;
  for (const auto& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      fail(path.string(), ": cannot write a tensor named '", t.name, "'");
    if (!names.insert(t.name).second) fail(path.string(), ": tensor '", t.name, "' given twice");
    auto n = detail::checked_nbytes(t.shape, dtype_size(t.dtype));
    if (!n) fail(path.string(), ": tensor '", t.name, "': negative or overflowing shape");
    if (*n != t.nbytes)
      fail(path.string(), ": tensor '", t.name, "': nbytes ", t.nbytes, " but shape needs ", *n);
    if (t.nbytes > 0 && !t.data) fail(path.string(), ": tensor '", t.name, "': data is null");
  }
}

}  // namespace

void write_safetensors(const fs::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  validate(path, tensors);
  // Largest element size first keeps every tensor naturally aligned without padding holes.
  std::vector<const TensorToWrite*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return dtype_size(a->dtype) > dtype_size(b->dtype);
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto* t : order) {
    header[t->name] = {{"dtype", dtype_name(t->dtype)},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + t->nbytes}}};
    offset += t->nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t len = text.size();

  AtomicWriter out(path);
  out.write(&len, sizeof(len));
  out.write(text.data(), text.size());
  for (const auto* t : order) out.write(t->data, t->nbytes);
  out.commit();
}

void write_safetensors_checkpoint(const fs::path& dir, const std::vector<TensorToWrite>& tensors,
                                  size_t max_shard_bytes,
                                  const std::map<std::string, std::string>& metadata) {
  validate(dir, tensors);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(dir.string(), ": cannot create directory: ", ec.message());

  // Greedy sharding in the given order; a tensor larger than the limit gets a shard of its own.
  std::vector<std::vector<TensorToWrite>> shards(1);
  size_t current = 0, total = 0;
  for (const auto& t : tensors) {
    if (!shards.back().empty() && current + t.nbytes > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(t);
    current += t.nbytes;
    total += t.nbytes;
  }

  if (shards.size() == 1) {
    write_safetensors(dir / "model.safetensors", tensors, metadata);
    fs::remove(dir / "model.safetensors.index.json", ec);  // would shadow the new file
    return;
  }
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    write_safetensors(dir / name, shards[i], metadata);
    for (const auto& t : shards[i]) weight_map[t.name] = name;
  }
  // The index goes last: a reader never sees an index naming shards not yet written.
  nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}},
                                  {"weight_map", weight_map}};
  write_file_atomic(dir / "model.safetensors.index.json", index.dump(2) + "\n");
}

}  // namespace drafteu::io
