// Families of perturbed models, LoRA and PEFT adapters, checked against independent references:
// dense merged weights W + ΔW built by hand, K separate single-model forwards, adapters written
// and SVDs computed by Debian's python3 + torch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "family/draft_source.h"
#include "family/ensemble.h"
#include "family/grouped_family.h"
#include "family/lora.h"
#include "family/low_rank_family.h"
#include "family/noise.h"
#include "family/peft.h"
#include "model/fast_forward.h"
#include "model/io/safetensors.h"
#include "model/llama.h"
#include "test_errors.h"
#include "test_support.h"
#include "util/error.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace drafteu;

namespace {

LlamaForCausalLM make_model(uint64_t seed, const std::string& preset = "tiny") {
  torch::manual_seed(seed);
  LlamaForCausalLM m(LlamaConfig::preset(preset));
  m->eval();
  return m;
}

// An independent copy of `base` whose module weights are W + ΔW (the dense reference).
LlamaForCausalLM merged_copy(const LlamaForCausalLM& base,
                             const std::map<std::string, torch::Tensor>& deltas) {
  LlamaForCausalLM m(base->config());
  m->eval();
  torch::NoGradGuard no_grad;
  auto src = base->hf_state();
  for (auto& [name, t] : m->hf_state()) t.copy_(src.at(name));
  for (const auto& [module, d] : deltas) m->linear(module).weight.add_(d);
  return m;
}

// ΔW = scale·B·A for each fixed term, multiplied out here rather than by the library.
std::map<std::string, torch::Tensor> dense_deltas(const MemberDeltas& member) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : member) out[name] = t.scale * torch::mm(t.b, t.a);
  return out;
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tol = 1e-5,
                  const std::string& what = "") {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double diff = (a - b).abs().max().item<double>();
  const double scale = std::max(1.0, b.abs().max().item<double>());
  EXPECT_LE(diff, tol * scale) << what << " max |diff| = " << diff;
}

template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no drafteu::Error thrown (expected one mentioning " << *parts.begin() << ")";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

std::string run_python(const fs::path& dir, const std::string& name, const std::string& script,
                       const std::string& args) {
  const fs::path file = dir / (name + ".py");
  write_text(file, script);
  auto r =
      test::run_command(std::string(test::reference_python()) + " '" + file.string() + "' " + args);
  EXPECT_EQ(r.exit_code, 0) << "python failed:\n" << r.err;
  return r.out;
}

torch::Tensor read_tensor(const io::SafetensorsFile& f, const std::string& name) {
  const auto* v = f.find(name);
  if (!v) throw std::runtime_error("missing tensor " + name);
  auto t = torch::empty(v->shape, torch::kFloat32);
  io::convert_to_f32(v->dtype, v->data, t.data_ptr<float>(), static_cast<size_t>(v->numel()));
  return t;
}

// Two sequences, the second left-padded by two.
struct Batch {
  torch::Tensor ids, mask;
};
Batch padded_batch(int64_t t = 7) {
  torch::manual_seed(123);
  auto ids = torch::randint(3, 500, {2, t}, torch::kInt64);
  auto mask = torch::ones({2, t}, torch::kInt64);
  mask[1].narrow(0, 0, 2).zero_();
  ids[1].narrow(0, 0, 2).zero_();
  return {ids, mask};
}

NoiseConfig lora_noise(uint64_t seed, double sigma = 0.1) {
  auto c = NoiseConfig::target_family(seed);
  c.sigma = sigma;
  c.rank = 4;
  return c;
}

}  // namespace

// ---------------------------------------------------------------- LoRA

TEST(Lora, FreshAdapterLeavesModelUnchanged) {
  torch::NoGradGuard no_grad;
  auto model = make_model(1);
  auto ids = padded_batch().ids;
  // An attached adapter takes the module path: compare with the module path, bit for bit.
  const bool fast = fast_forward_enabled();
  set_fast_forward_enabled(false);
  auto ref = model->forward(ids);
  set_fast_forward_enabled(fast);
  LoraConfig cfg;
  cfg.target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                        "gate_proj", "up_proj", "down_proj"};
  LoraAdapter lora(*model, cfg);
  EXPECT_EQ(lora->module_names().size(), 14u);
  for (const auto& [name, layer] : lora->layers()) {
    EXPECT_EQ(layer->lora_B.abs().sum().item<double>(), 0.0);
    EXPECT_GT(layer->lora_A.abs().sum().item<double>(), 0.0);
    // kaiming_uniform(a = sqrt 5): U(-1/sqrt(in), 1/sqrt(in))
    EXPECT_LE(layer->lora_A.abs().max().item<double>(),
              1.0 / std::sqrt(double(layer->lora_A.size(1))) + 1e-7);
  }
  lora->attach(*model);
  EXPECT_TRUE(torch::equal(model->forward(ids), ref));
}

TEST(Lora, ForwardEqualsMergedWeight) {
  torch::NoGradGuard no_grad;
  auto model = make_model(2);
  LoraConfig cfg;
  cfg.r = 4;
  cfg.alpha = 12;
  cfg.target_modules = {"q_proj", "v_proj", "down_proj"};
  LoraAdapter lora(*model, cfg);
  std::map<std::string, torch::Tensor> deltas;
  for (const auto& [name, layer] : lora->layers()) {
    layer->lora_B.normal_(0, 0.2);
    deltas[name] = (12.0 / 4.0) * torch::mm(layer->lora_B, layer->lora_A);
  }
  auto reference = merged_copy(model, deltas);
  lora->attach(*model);
  auto b = padded_batch();
  expect_close(model->forward(b.ids, nullptr, b.mask), reference->forward(b.ids, nullptr, b.mask));
  lora->detach();
  auto plain = merged_copy(model, {});
  EXPECT_TRUE(torch::equal(model->forward(b.ids), plain->forward(b.ids)));
}

TEST(Lora, TrainsAndDropoutOnlyInTraining) {
  auto model = make_model(3);
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  LoraConfig cfg;
  cfg.r = 2;
  cfg.dropout = 0.5;
  LoraAdapter lora(*model, cfg);
  lora->attach(*model);
  auto ids = padded_batch().ids;
  EXPECT_EQ(lora->parameters().size(), 8u);  // A and B for q/v in two layers

  lora->train();
  torch::optim::SGD opt(lora->parameters(), 0.1);
  auto logits = model->forward(ids);
  auto loss =
      torch::nn::functional::cross_entropy(logits.view({-1, logits.size(-1)}), ids.view({-1}));
  loss.backward();
  auto b_before = lora->layers().begin()->second->lora_B.detach().clone();
  opt.step();
  EXPECT_FALSE(torch::equal(b_before, lora->layers().begin()->second->lora_B));

  torch::NoGradGuard no_grad;
  lora->eval();  // no dropout: deterministic, equals the dense merge
  auto e1 = model->forward(ids);
  EXPECT_TRUE(torch::equal(e1, model->forward(ids)));
  std::map<std::string, torch::Tensor> deltas;
  for (const auto& [name, layer] : lora->layers())
    deltas[name] = cfg.scaling() * torch::mm(layer->lora_B, layer->lora_A);
  expect_close(e1, merged_copy(model, deltas)->forward(ids));
  lora->train();  // dropout on the adapter input makes the output random
  EXPECT_FALSE(torch::equal(model->forward(ids), model->forward(ids)));
}

TEST(Lora, ComposesWithNoise) {
  torch::NoGradGuard no_grad;
  auto model = make_model(4);
  LoraConfig cfg;
  cfg.target_modules = {"q_proj", "o_proj"};
  LoraAdapter lora(*model, cfg);
  std::map<std::string, torch::Tensor> deltas;
  for (const auto& [name, layer] : lora->layers()) {
    layer->lora_B.normal_(0, 0.1);
    deltas[name] = cfg.scaling() * torch::mm(layer->lora_B, layer->lora_A);
  }
  auto noise = NoiseSampler(*model, lora_noise(9)).member(0);
  for (const auto& [name, d] : dense_deltas(noise))
    deltas[name] = deltas.count(name) ? deltas[name] + d : d;
  lora->attach(*model);
  auto attached = attach_member(*model, noise);
  auto ids = padded_batch().ids;
  expect_close(model->forward(ids), merged_copy(model, deltas)->forward(ids));
}

TEST(Lora, UnknownTargetModule) {
  auto model = make_model(5);
  LoraConfig cfg;
  cfg.target_modules = {"q_proj", "qkv_proj"};
  expect_error([&] { LoraAdapter(*model, cfg); }, {"qkv_proj", "matches no linear layer"});
  cfg.target_modules = {"q_proj"};
  cfg.r = 0;
  expect_error([&] { LoraAdapter(*model, cfg); }, {"'r'"});
}

// ---------------------------------------------------------------- PEFT files

TEST(Peft, SaveLoadRoundTripsExactly) {
  auto model = make_model(6);
  LoraConfig cfg;
  cfg.r = 3;
  cfg.alpha = 7.5;
  cfg.dropout = 0.05;
  cfg.target_modules = {"k_proj", "up_proj"};
  cfg.base_model_name_or_path = "tiny-test";
  LoraAdapter lora(*model, cfg);
  {
    torch::NoGradGuard no_grad;
    for (const auto& [_, layer] : lora->layers()) layer->lora_B.normal_();
  }
  auto dir = test::scratch_dir("family_peft_roundtrip");
  save_peft_adapter(*lora, dir);
  auto back = load_peft_adapter(dir, *model);
  EXPECT_EQ(back->config().r, 3);
  EXPECT_EQ(back->config().alpha, 7.5);
  EXPECT_EQ(back->config().dropout, 0.05);
  EXPECT_EQ(back->config().target_modules, cfg.target_modules);
  EXPECT_EQ(back->config().base_model_name_or_path, "tiny-test");
  ASSERT_EQ(back->module_names(), lora->module_names());
  for (const auto& [name, layer] : lora->layers()) {
    EXPECT_TRUE(torch::equal(back->layer(name)->lora_A, layer->lora_A)) << name;
    EXPECT_TRUE(torch::equal(back->layer(name)->lora_B, layer->lora_B)) << name;
    EXPECT_EQ(back->layer(name)->scaling, 2.5);
  }
  // No temp files left beside the two outputs.
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"adapter_config.json", "adapter_model.safetensors"}));
}

TEST(Peft, TensorNamesAndConfigFieldsMatchPeft) {
  auto model = make_model(7);
  LoraConfig cfg;
  cfg.r = 2;
  cfg.alpha = 4;
  cfg.target_modules = {"q_proj", "down_proj"};
  cfg.base_model_name_or_path = "meta-llama/Llama-3.2-1B";
  LoraAdapter lora(*model, cfg);
  auto dir = test::scratch_dir("family_peft_names");
  save_peft_adapter(*lora, dir);

  io::SafetensorsFile st(dir / "adapter_model.safetensors");
  std::vector<std::string> names;
  for (const auto& t : st.tensors()) names.push_back(t.name);
  std::sort(names.begin(), names.end());
  const std::vector<std::string> expected = {
      "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight",
      "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight",
      "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
      "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
      "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight",
      "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight",
      "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight",
      "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"};
  EXPECT_EQ(names, expected);
  EXPECT_EQ(st.metadata().at("format"), "pt");
  EXPECT_EQ(st.find(expected[0])->shape, (std::vector<int64_t>{2, 172}));  // A [r, in]
  EXPECT_EQ(st.find(expected[1])->shape, (std::vector<int64_t>{64, 2}));   // B [out, r]
  EXPECT_EQ(st.find(expected[0])->dtype, io::DType::F32);

  auto j = json::parse(std::ifstream(dir / "adapter_config.json"));
  EXPECT_EQ(j.at("peft_type"), "LORA");
  EXPECT_EQ(j.at("task_type"), "CAUSAL_LM");
  EXPECT_EQ(j.at("r"), 2);
  EXPECT_EQ(j.at("lora_alpha"), 4.0);
  EXPECT_EQ(j.at("lora_dropout"), 0.0);
  EXPECT_EQ(j.at("target_modules"), json({"q_proj", "down_proj"}));
  EXPECT_EQ(j.at("bias"), "none");
  EXPECT_EQ(j.at("base_model_name_or_path"), "meta-llama/Llama-3.2-1B");
  EXPECT_EQ(j.at("fan_in_fan_out"), false);
  EXPECT_EQ(j.at("use_rslora"), false);
  EXPECT_EQ(j.at("use_dora"), false);
  EXPECT_EQ(j.at("inference_mode"), true);
  EXPECT_EQ(j.at("init_lora_weights"), true);
  EXPECT_TRUE(j.at("modules_to_save").is_null());
  EXPECT_TRUE(j.at("layers_to_transform").is_null());
  EXPECT_EQ(j.at("rank_pattern"), json::object());
  EXPECT_EQ(j.at("alpha_pattern"), json::object());
}

// PEFT's layout written by hand (no peft/safetensors packages): the deltas B·A·scale come back.
static const char* kPyPeftWriter = R"PY(
import json, struct, sys, torch
out = sys.argv[1]
torch.manual_seed(0)
r, alpha = 4, 8.0
modules = {"model.layers.0.self_attn.q_proj": (64, 64), "model.layers.1.self_attn.q_proj": (64, 64),
           "model.layers.0.self_attn.v_proj": (32, 64), "model.layers.1.self_attn.v_proj": (32, 64)}
def write_st(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        if t.dtype == torch.bfloat16:
            raw, dt = t.contiguous().view(torch.int16).numpy().tobytes(), "BF16"
        else:
            raw, dt = t.contiguous().float().numpy().tobytes(), "F32"
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
weights, deltas = {}, {}
for i, (m, (o, n)) in enumerate(modules.items()):
    A = torch.randn(r, n) * 0.1
    B = torch.randn(o, r) * 0.1
    if i == 3:  # one pair stored as bf16, as PEFT does for a bf16 model
        A, B = A.bfloat16(), B.bfloat16()
    weights[f"base_model.model.{m}.lora_A.weight"] = A
    weights[f"base_model.model.{m}.lora_B.weight"] = B
    deltas[m] = (B.double() @ A.double()) * (alpha / r)
write_st(f"{out}/adapter_model.safetensors", weights, {"format": "pt"})
write_st(f"{out}/expected_deltas.safetensors", {k: v.float() for k, v in deltas.items()}, {})
config = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "tiny",
          "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
          "layer_replication": None, "layers_pattern": None, "layers_to_transform": None,
          "loftq_config": {}, "lora_alpha": alpha, "lora_dropout": 0.05, "megatron_config": None,
          "megatron_core": "megatron.core", "modules_to_save": None, "peft_type": "LORA", "r": r,
          "rank_pattern": {}, "revision": None, "target_modules": ["v_proj", "q_proj"],
          "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": False}
with open(f"{out}/adapter_config.json", "w") as f:
    json.dump(config, f, indent=2)
print("ok")
)PY";

TEST(Peft, LoadsAdapterWrittenByPython) {
  torch::NoGradGuard no_grad;
  auto dir = test::scratch_dir("family_peft_python");
  ASSERT_EQ(run_python(dir, "writer", kPyPeftWriter, "'" + dir.string() + "'"), "ok\n");
  auto model = make_model(8);
  auto lora = load_peft_adapter(dir, *model);
  EXPECT_EQ(lora->config().r, 4);
  EXPECT_EQ(lora->config().alpha, 8.0);
  EXPECT_EQ(lora->config().dropout, 0.05);
  EXPECT_FALSE(lora->is_training());  // loaded for inference: no dropout
  ASSERT_EQ(lora->module_names().size(), 4u);
  io::SafetensorsFile expected(dir / "expected_deltas.safetensors");
  std::map<std::string, torch::Tensor> deltas;
  for (const auto& name : lora->module_names()) {
    deltas[name] = read_tensor(expected, name);
    auto layer = lora->layer(name);
    expect_close(layer->scaling * torch::mm(layer->lora_B, layer->lora_A), deltas[name], 1e-6,
                 name);
  }
  auto reference = merged_copy(model, deltas);
  lora->attach(*model);
  auto b = padded_batch();
  expect_close(model->forward(b.ids, nullptr, b.mask), reference->forward(b.ids, nullptr, b.mask));
}

TEST(Peft, BadAdaptersGiveClearErrors) {
  auto model = make_model(9);
  LoraConfig cfg;
  cfg.r = 2;
  LoraAdapter lora(*model, cfg);
  auto dir = test::scratch_dir("family_peft_bad");
  save_peft_adapter(*lora, dir);
  const auto config_path = dir / "adapter_config.json";
  const std::string good = json::parse(std::ifstream(config_path)).dump();
  auto with = [&](const std::function<void(json&)>& edit) {
    auto j = json::parse(good);
    edit(j);
    write_text(config_path, j.dump());
  };

  write_text(config_path, "{\"peft_type\": \"LORA\", \"r\": 2,");
  expect_error([&] { load_peft_adapter(dir, *model); }, {"adapter_config.json", "not valid JSON"});
  with([](json& j) { j["peft_type"] = "IA3"; });
  expect_error([&] { load_peft_adapter(dir, *model); },
               {"adapter_config.json", "'peft_type'", "IA3"});
  with([](json& j) { j.erase("r"); });
  expect_error([&] { load_peft_adapter(dir, *model); }, {"adapter_config.json", "'r'"});
  with([](json& j) { j["r"] = "eight"; });
  expect_error([&] { load_peft_adapter(dir, *model); }, {"'r'"});
  with([](json& j) { j["target_modules"] = 5; });
  expect_error([&] { load_peft_adapter(dir, *model); }, {"'target_modules'"});
  with([](json& j) { j["use_dora"] = true; });
  expect_error([&] { load_peft_adapter(dir, *model); }, {"'use_dora'", "not supported"});
  with([](json& j) { j["fan_in_fan_out"] = true; });
  expect_error([&] { load_peft_adapter(dir, *model); }, {"'fan_in_fan_out'"});
  // A target the model does not have.
  with([](json& j) { j["target_modules"] = {"q_proj", "v_proj", "c_attn"}; });
  expect_error([&] { load_peft_adapter(dir, *model); }, {"c_attn", "matches no linear layer"});
  // Tensors present but not targeted by the config.
  with([](json& j) { j["target_modules"] = {"q_proj"}; });
  expect_error([&] { load_peft_adapter(dir, *model); }, {"v_proj", "target_modules"});
  // Rank in the config disagreeing with the tensors.
  with([](json& j) { j["r"] = 3; });
  expect_error([&] { load_peft_adapter(dir, *model); },
               {"adapter_model.safetensors", "lora_A.weight", "shape", "[3, 64]"});
  with([](json&) {});
  EXPECT_NO_THROW(load_peft_adapter(dir, *model));

  // Weight files with a wrong shape, a module the model lacks, a missing factor.
  auto write_weights = [&](std::map<std::string, torch::Tensor> tensors) {
    std::vector<io::TensorToWrite> w;
    for (auto& [name, t] : tensors) {
      t = t.contiguous();
      w.push_back({name, io::DType::F32, t.sizes().vec(), t.data_ptr(), size_t(t.numel()) * 4});
    }
    io::write_safetensors(dir / "adapter_model.safetensors", w);
  };
  const std::string q0 = "base_model.model.model.layers.0.self_attn.q_proj";
  write_weights({{q0 + ".lora_A.weight", torch::zeros({2, 64})},
                 {q0 + ".lora_B.weight", torch::zeros({32, 2})}});
  expect_error([&] { load_peft_adapter(dir, *model); },
               {"adapter_model.safetensors", q0 + ".lora_B.weight", "[32, 2]", "[64, 2]"});
  const std::string q9 = "base_model.model.model.layers.9.self_attn.q_proj";
  write_weights({{q9 + ".lora_A.weight", torch::zeros({2, 64})},
                 {q9 + ".lora_B.weight", torch::zeros({64, 2})}});
  expect_error([&] { load_peft_adapter(dir, *model); },
               {"model.layers.9.self_attn.q_proj", "lacks"});
  write_weights({{q0 + ".lora_A.weight", torch::zeros({2, 64})}});
  expect_error([&] { load_peft_adapter(dir, *model); }, {"lora_B", "missing"});
  write_weights({{q0 + ".lora_A.default.weight", torch::zeros({2, 64})}});
  expect_error([&] { load_peft_adapter(dir, *model); },
               {"lora_A.default.weight", "not a PEFT LoRA factor"});
  fs::remove(dir / "adapter_model.safetensors");
  expect_error([&] { load_peft_adapter(dir, *model); }, {"adapter_model.safetensors", "not found"});
}

// Hostile adapters (issue 14): deep JSON, a backtracking regex, non-finite weights, absurd alpha.
TEST(Peft, HostileAdaptersGiveClearErrors) {
  auto model = make_model(9);
  LoraConfig cfg;
  cfg.r = 2;
  LoraAdapter lora(*model, cfg);
  auto dir = test::scratch_dir("family_peft_hostile");
  save_peft_adapter(*lora, dir);
  const auto config_path = dir / "adapter_config.json";
  const std::string good = json::parse(std::ifstream(config_path)).dump();
  auto with_field = [&](const std::string& field, const std::string& raw_value) {
    auto j = json::parse(good);
    j.erase(field);
    std::string text = j.dump();
    text.insert(1, "\"" + field + "\": " + raw_value + ", ");
    write_text(config_path, text);
  };
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  for (const char* field : {"target_modules", "bias"}) {
    with_field(field, deep);
    expect_error([&] { load_peft_adapter(dir, *model); }, {"adapter_config.json", "nests deeper"});
  }
  with_field("lora_alpha", "1e308");
  expect_error([&] { load_peft_adapter(dir, *model); }, {"adapter_config.json", "'lora_alpha'"});
  with_field("lora_alpha", "16");
  EXPECT_NO_THROW(load_peft_adapter(dir, *model));

  // Non-finite factors: the adapter loads no more (it used to give eu_hat null downstream).
  const std::string q0 = "base_model.model.model.layers.0.self_attn.q_proj";
  for (float bad : {std::numeric_limits<float>::infinity(), std::nanf("")}) {
    auto a = torch::zeros({2, 64});
    auto b = torch::zeros({64, 2});
    b[3][1] = bad;
    std::vector<io::TensorToWrite> w = {
        {q0 + ".lora_A.weight", io::DType::F32, {2, 64}, a.data_ptr(), size_t(a.numel()) * 4},
        {q0 + ".lora_B.weight", io::DType::F32, {64, 2}, b.data_ptr(), size_t(b.numel()) * 4}};
    io::write_safetensors(dir / "adapter_model.safetensors", w);
    expect_error([&] { load_peft_adapter(dir, *model); },
                 {"adapter_model.safetensors", q0 + ".lora_B.weight", "non-finite"});
  }
}

TEST(Lora, TargetRegexIsABoundedFullMatch) {
  auto model = make_model(9);
  LoraConfig cfg;
  // PEFT's re.fullmatch: a bare suffix matches nothing, an anchored-by-construction one does.
  cfg.target_regex = "q_proj";
  expect_error([&] { lora_target_modules(*model, cfg); }, {"matches no linear layer"});
  cfg.target_regex = R"(model\.layers\.1\.self_attn\.(q|v)_proj)";
  EXPECT_EQ(lora_target_modules(*model, cfg),
            (std::vector<std::string>{"model.layers.1.self_attn.q_proj",
                                      "model.layers.1.self_attn.v_proj"}));
  cfg.target_regex = R"(.*\.mlp\.down_proj)";
  EXPECT_EQ(lora_target_modules(*model, cfg).size(), 2u);
  cfg.target_regex = "(unclosed";
  expect_error([&] { lora_target_modules(*model, cfg); }, {"(unclosed", "invalid"});
  // Patterns that backtrack exponentially end at once (std::regex ran for minutes).
  for (const char* hostile : {"(.|.|.)*z", R"((.|.)*\d)"}) {
    cfg.target_regex = hostile;
    const auto t0 = std::chrono::steady_clock::now();
    const std::string err = test::error_of([&] { lora_target_modules(*model, cfg); });
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
    EXPECT_NE(err.find(hostile), std::string::npos) << err;
  }
}

// ---------------------------------------------------------------- noise

TEST(Noise, SeededPerMember) {
  auto model = make_model(10);
  NoiseSampler s1(*model, lora_noise(42)), s2(*model, lora_noise(42)), s3(*model, lora_noise(43));
  auto three = s1.members(3), six = s2.members(6);
  for (int m = 0; m < 3; ++m) {
    for (const auto& [name, t] : three[m]) {
      EXPECT_TRUE(torch::equal(t.a, six[m].at(name).a)) << name;
      EXPECT_TRUE(torch::equal(t.b, six[m].at(name).b)) << name;
    }
  }
  const auto& q = "model.layers.0.self_attn.q_proj";
  EXPECT_FALSE(torch::equal(three[0].at(q).a, three[1].at(q).a));
  EXPECT_FALSE(torch::equal(three[0].at(q).a, s3.member(0).at(q).a));
  // Shapes, scale (alpha defaults to rank) and the spread of the entries.
  EXPECT_EQ(three[0].size(), 14u);
  EXPECT_EQ(three[0].at(q).a.sizes(), (std::vector<int64_t>{4, 64}));
  EXPECT_EQ(three[0].at(q).b.sizes(), (std::vector<int64_t>{64, 4}));
  EXPECT_EQ(three[0].at(q).scale, 1.0);
  auto big = NoiseSampler(*model, NoiseConfig::draft_init(1)).member(0);
  auto all = torch::cat({big.at("model.layers.0.mlp.up_proj").a.flatten(),
                         big.at("model.layers.0.mlp.up_proj").b.flatten()});
  EXPECT_NEAR(all.std().item<double>(), 0.5, 0.03);
  EXPECT_NEAR(all.mean().item<double>(), 0.0, 0.03);
  auto cfg = lora_noise(1);
  cfg.alpha = 8.0;
  EXPECT_EQ(NoiseSampler(*model, cfg).member(0).at(q).scale, 2.0);
  cfg.target_modules = {"q_proj", "wq"};
  expect_error([&] { NoiseSampler(*model, cfg); }, {"wq", "matches no linear layer"});
}

TEST(Tokur, PerturbationInSpanOfTopSingularVectors) {
  auto model = make_model(11);
  NoiseSampler s(*model, NoiseConfig::tokur(5));
  auto m = s.member(1);
  ASSERT_EQ(m.size(), 4u);  // q_proj, v_proj in two layers
  for (const auto& [name, t] : m) {
    auto u = t.b.to(torch::kFloat64);
    EXPECT_EQ(u.sizes(), (std::vector<int64_t>{model->linear(name).out_features(), 8}));
    expect_close(u.t().mm(u), torch::eye(8, torch::kFloat64), 1e-6, name + " orthonormal");
    auto dw = (t.scale * torch::mm(t.b, t.a)).to(torch::kFloat64);
    auto residual = dw - u.mm(u.t().mm(dw));
    EXPECT_LE(residual.norm().item<double>(), 1e-6 * dw.norm().item<double>()) << name;
    EXPECT_NEAR(t.a.std().item<double>(), 0.1, 0.01);
  }
}

static const char* kPySvd = R"PY(
import json, struct, sys, torch
path, r = sys.argv[1], int(sys.argv[2])
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
out = {}
for name, info in header.items():
    if name == "__metadata__":
        continue
    b, e = info["data_offsets"]
    w = torch.frombuffer(bytearray(raw[8 + n + b:8 + n + e]), dtype=torch.float32).view(*info["shape"])
    U, S, Vh = torch.linalg.svd(w.double(), full_matrices=False)
    out[name] = U[:, :r].tolist()
print(json.dumps(out))
)PY";

TEST(Tokur, BasisMatchesPythonSvd) {
  auto model = make_model(12);
  auto dir = test::scratch_dir("family_tokur_svd");
  NoiseSampler s(*model, NoiseConfig::tokur(0));
  std::vector<torch::Tensor> keep;
  std::vector<io::TensorToWrite> w;
  for (const auto& name : s.modules()) {
    keep.push_back(model->linear(name).weight.detach().contiguous());
    w.push_back({name, io::DType::F32, keep.back().sizes().vec(), keep.back().data_ptr(),
                 size_t(keep.back().numel()) * 4});
  }
  io::write_safetensors(dir / "weights.safetensors", w);
  auto py = json::parse(
      run_python(dir, "svd", kPySvd, "'" + (dir / "weights.safetensors").string() + "' 8"));
  ASSERT_EQ(py.size(), 4u);
  for (const auto& name : s.modules()) {
    const auto rows = py.at(name).get<std::vector<std::vector<double>>>();
    auto expected = torch::empty({int64_t(rows.size()), 8}, torch::kFloat64);
    for (size_t i = 0; i < rows.size(); ++i)
      for (size_t j = 0; j < 8; ++j) expected[int64_t(i)][int64_t(j)] = rows[i][j];
    auto u = s.basis(name).to(torch::kFloat64);
    ASSERT_EQ(u.sizes(), expected.sizes());
    auto sign = (u * expected).sum(0).sign();  // columns agree up to sign
    expect_close(u, expected * sign, 1e-5, name);
  }
}

// ---------------------------------------------------------------- batched family

TEST(Family, BatchedEqualsSeparateForwards) {
  torch::NoGradGuard no_grad;
  auto model = make_model(13);
  auto members = NoiseSampler(*model, lora_noise(7)).members(3);
  LowRankFamily family(model, members);
  EXPECT_EQ(family.expand_layer(), 0);
  auto b = padded_batch();
  auto logits = family.forward(b.ids, nullptr, b.mask);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{3, 2, 7, 512}));
  for (int k = 0; k < 3; ++k) {
    auto ref = merged_copy(model, dense_deltas(members[k]))->forward(b.ids, nullptr, b.mask);
    expect_close(logits[k], ref, 1e-5, "member " + std::to_string(k));
    expect_close(family.forward_member(k, b.ids, nullptr, b.mask), ref, 1e-5);
  }
  auto last = family.forward(b.ids, nullptr, b.mask, /*last_only=*/true);
  expect_close(last, logits.narrow(2, 6, 1));
  // Members forwarded in chunks (one and two at a time) give the same logits.
  for (int64_t rows : {14, 28}) {
    family.set_max_rows(rows);
    expect_close(family.forward(b.ids, nullptr, b.mask), logits, 1e-5, "chunked");
    expect_close(family.forward(b.ids, nullptr, b.mask, true), last, 1e-5, "chunked last");
  }
}

// §4.4's imitated groups: member g is the mixture of its drafts' distributions, computed here in
// float64 from the members' own logits; a group of one is that member.
TEST(Family, GroupedMembersAreMixturesOfTheirGroups) {
  torch::NoGradGuard no_grad;
  auto model = make_model(23);
  auto members = NoiseSampler(*model, lora_noise(9)).members(6);
  auto inner = std::make_shared<LowRankFamily>(model, members);
  const auto groups = GroupedFamily::by_member(2, 3);  // the 2x3 pool, draft (s, m) = s*3 + m
  ASSERT_EQ(groups, (std::vector<std::vector<int64_t>>{{0, 3}, {1, 4}, {2, 5}}));
  GroupedFamily grouped(inner, groups);
  EXPECT_EQ(grouped.size(), 3);
  EXPECT_EQ(grouped.parameters_read_per_token(), inner->parameters_read_per_token());
  EXPECT_EQ(&grouped.forwarded(), inner.get());  // a cost counts the six drafts it runs
  EXPECT_EQ(&inner->forwarded(), inner.get());
  auto b = padded_batch();
  const auto logits = inner->forward(b.ids, nullptr, b.mask).to(torch::kFloat64);
  const auto out = grouped.forward(b.ids, nullptr, b.mask);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{3, 2, 7, 512}));
  const auto p = torch::softmax(logits, -1);
  for (int64_t g = 0; g < 3; ++g) {
    const auto mix = (p[groups[g][0]] + p[groups[g][1]]) / 2;
    expect_close(out[g].exp().to(torch::kFloat64), mix, 1e-5, "group " + std::to_string(g));
  }
  // KL is convex: the groups' mean KL to a reference is at most the drafts' mean KL to it.
  const auto ref = torch::log_softmax(logits.mean(0), -1);
  auto mean_kl = [&](const torch::Tensor& logq) {
    return (logq.exp() * (logq - ref)).sum(-1).mean().item<double>();
  };
  EXPECT_LT(mean_kl(out.to(torch::kFloat64)), mean_kl(torch::log_softmax(logits, -1)));
  // One group per member: the members themselves (as log-probabilities).
  GroupedFamily singles(inner, GroupedFamily::by_member(1, 6));
  expect_close(singles.forward(b.ids, nullptr, b.mask).to(torch::kFloat64),
               torch::log_softmax(logits, -1), 1e-5, "groups of one");
  EXPECT_THROW(GroupedFamily(inner, {{0, 6}}), Error);       // no member 6
  EXPECT_THROW(GroupedFamily(inner, {{0, 1}, {1}}), Error);  // member 1 twice
  EXPECT_THROW(GroupedFamily(inner, {{0}, {}}), Error);      // an empty group
}

TEST(Family, IncrementalDecodeEqualsSeparateForwards) {
  torch::NoGradGuard no_grad;
  auto model = make_model(14);
  auto members = NoiseSampler(*model, lora_noise(8)).members(4);
  LowRankFamily family(model, members);
  std::vector<LlamaForCausalLM> refs;
  std::vector<KVCache> ref_caches;
  for (const auto& m : members) {
    refs.push_back(merged_copy(model, dense_deltas(m)));
    ref_caches.push_back(refs.back()->new_cache(4));  // small: the caches grow while decoding
  }
  auto cache = family.new_cache(4);
  auto b = padded_batch(5);
  auto out = family.forward(b.ids, &cache, b.mask);
  for (int k = 0; k < 4; ++k)
    expect_close(out[k], refs[k]->forward(b.ids, &ref_caches[k], b.mask), 1e-5, "prefill");
  torch::manual_seed(5);
  for (int step = 0; step < 4; ++step) {
    auto next = torch::randint(3, 500, {2, 1}, torch::kInt64);
    out = family.forward(next, &cache);
    ASSERT_EQ(out.sizes(), (std::vector<int64_t>{4, 2, 1, 512}));
    for (int k = 0; k < 4; ++k)
      expect_close(out[k], refs[k]->forward(next, &ref_caches[k]), 1e-5,
                   "step " + std::to_string(step));
  }
  EXPECT_EQ(cache.length(), 9);
  EXPECT_EQ(cache.at(0).keys(0).size(0), 8);  // expanded from layer 0: K·B rows
  // Rolling back and re-decoding gives the same logits.
  auto again = torch::randint(3, 500, {2, 1}, torch::kInt64);
  cache.truncate(8);
  for (auto& c : ref_caches) c.truncate(8);
  out = family.forward(again, &cache);
  for (int k = 0; k < 4; ++k)
    expect_close(out[k], refs[k]->forward(again, &ref_caches[k]), 1e-5, "after truncate");
}

TEST(Family, ExpandsAtFirstPerturbedLayer) {
  torch::NoGradGuard no_grad;
  auto model = make_model(15);
  auto cfg = lora_noise(3);
  cfg.target_modules = {"layers.1.mlp.down_proj", "layers.1.self_attn.v_proj"};
  auto members = NoiseSampler(*model, cfg).members(3);
  LowRankFamily family(model, members);
  EXPECT_EQ(family.expand_layer(), 1);
  auto cache = family.new_cache();
  auto b = padded_batch(6);
  auto out = family.forward(b.ids, &cache, b.mask);
  EXPECT_EQ(cache.at(0).keys(0).size(0), 2);  // layer 0 ran once at batch B
  EXPECT_EQ(cache.at(0).keys(1).size(0), 6);
  auto next = torch::full({2, 1}, 17, torch::kInt64);
  auto step = family.forward(next, &cache);
  for (int k = 0; k < 3; ++k) {
    auto ref = merged_copy(model, dense_deltas(members[k]));
    auto c = ref->new_cache();
    expect_close(out[k], ref->forward(b.ids, &c, b.mask));
    expect_close(step[k], ref->forward(next, &c));
  }
}

// Cached calls of a family take the fast path (every member over raw buffers, model/fast_forward);
// the module path, with its own cache, is the reference: expansion at layer 0, at layer 1 and at
// lm_head only, a member without terms, left padding, decode steps and a roll-back.
TEST(Family, FastPathMatchesModulePath) {
  torch::NoGradGuard no_grad;
  auto model = make_model(17);
  const std::vector<std::vector<std::string>> targets{
      {}, {"layers.1.mlp.down_proj", "layers.1.self_attn.v_proj"}, {"lm_head"}};
  for (const auto& modules : targets) {
    auto cfg = lora_noise(4);
    if (!modules.empty()) cfg.target_modules = modules;
    auto members = NoiseSampler(*model, cfg).members(3);
    members[1].clear();  // the unperturbed member of a target + adapter pair
    LowRankFamily family(model, members);
    const std::string what = "expansion at layer " + std::to_string(family.expand_layer());
    auto fast_cache = family.new_cache(4), ref_cache = family.new_cache(4);
    auto step = [&](const torch::Tensor& ids, const torch::Tensor& mask, bool last_only) {
      const int64_t calls = fast_forward_calls();
      auto fast = family.forward(ids, &fast_cache, mask, last_only);
      EXPECT_EQ(fast_forward_calls(), calls + 1) << what << ": the fast path did not run";
      set_fast_forward_enabled(false);
      auto ref = family.forward(ids, &ref_cache, mask, last_only);
      set_fast_forward_enabled(true);
      EXPECT_EQ(fast_forward_calls(), calls + 1);
      expect_close(fast, ref, 1e-5, what);
    };
    auto b = padded_batch(6);
    step(b.ids, b.mask, false);
    torch::manual_seed(6);
    for (int i = 0; i < 3; ++i) step(torch::randint(3, 500, {2, 1}, torch::kInt64), {}, true);
    fast_cache.truncate(7);
    ref_cache.truncate(7);
    step(torch::randint(3, 500, {2, 2}, torch::kInt64), {}, false);
    EXPECT_EQ(fast_cache.length(), ref_cache.length());
  }
  // TokUR's per-token terms stay on the module path.
  auto tokur_cfg = NoiseConfig::tokur(3);
  tokur_cfg.per_token = true;
  LowRankFamily tokur(model, NoiseSampler(*model, tokur_cfg).members(2));
  auto cache = tokur.new_cache();
  const int64_t calls = fast_forward_calls();
  tokur.forward(padded_batch().ids, &cache);
  EXPECT_EQ(fast_forward_calls(), calls);
}

TEST(Family, SeedsAndFamilySize) {
  torch::NoGradGuard no_grad;
  auto model = make_model(16);
  auto b = padded_batch();
  auto cfg = lora_noise(21);
  LowRankFamily three(model, NoiseSampler(*model, cfg).members(3));
  LowRankFamily six(model, NoiseSampler(*model, cfg).members(6));
  auto l3 = three.forward(b.ids, nullptr, b.mask), l6 = six.forward(b.ids, nullptr, b.mask);
  for (int m = 0; m < 3; ++m) expect_close(l3[m], l6[m], 1e-5, "member " + std::to_string(m));
  EXPECT_GT((l6[3] - l6[4]).abs().max().item<double>(), 1e-3);
  cfg.seed = 22;
  auto other =
      LowRankFamily(model, NoiseSampler(*model, cfg).members(3)).forward(b.ids, nullptr, b.mask);
  EXPECT_GT((other[0] - l3[0]).abs().max().item<double>(), 1e-3);
  // Zero noise: every member is the base model.
  LowRankFamily zero(model, NoiseSampler(*model, lora_noise(21, 0.0)).members(3));
  auto base = model->forward(b.ids, nullptr, b.mask);
  auto lz = zero.forward(b.ids, nullptr, b.mask);
  for (int m = 0; m < 3; ++m) expect_close(lz[m], base, 1e-5);
}

TEST(Family, TokurPerTokenRedraw) {
  torch::NoGradGuard no_grad;
  auto model = make_model(17);
  auto cfg = NoiseConfig::tokur(4);
  cfg.sigma = 0.3;
  cfg.per_token = true;
  cfg.keep_unperturbed = true;
  auto members = NoiseSampler(*model, cfg).members(3);
  EXPECT_TRUE(members[0].empty());
  LowRankFamily family(model, members);
  auto cache = family.new_cache();
  auto b = padded_batch(5);
  auto out = family.forward(b.ids, &cache, b.mask);
  std::vector<KVCache> caches;
  for (int k = 0; k < 3; ++k) {
    caches.push_back(model->new_cache());
    expect_close(out[k], family.forward_member(k, b.ids, &caches[k], b.mask), 1e-5, "prefill");
  }
  expect_close(out[0], model->forward(b.ids, nullptr, b.mask));  // the unperturbed member
  for (int step = 0; step < 3; ++step) {
    auto next = torch::full({2, 1}, 40 + step, torch::kInt64);
    out = family.forward(next, &cache);
    for (int k = 0; k < 3; ++k)
      expect_close(out[k], family.forward_member(k, next, &caches[k]), 1e-5);
  }
  // The noise follows real-token positions: the padded row 1 equals the same tokens unpadded.
  auto solo_ids = b.ids[1].narrow(0, 2, 3).unsqueeze(0);
  auto solo = family.forward(solo_ids);
  auto padded = family.forward(b.ids, nullptr, b.mask);
  family.set_max_rows(10);  // one member at a time
  expect_close(family.forward(b.ids, nullptr, b.mask), padded, 1e-5, "chunked");
  expect_close(padded.select(1, 1).narrow(1, 2, 3), solo.select(1, 0), 1e-4);
  // Each position draws its own E: a fixed-E family would give different logits.
  auto fixed_cfg = cfg;
  fixed_cfg.per_token = false;
  auto fixed = LowRankFamily(model, NoiseSampler(*model, fixed_cfg).members(3))
                   .forward(b.ids, nullptr, b.mask);
  EXPECT_GT((fixed[1] - padded[1]).abs().max().item<double>(), 1e-4);
}

TEST(Family, LoraDraftsBatched) {
  torch::NoGradGuard no_grad;
  auto model = make_model(18);
  LoraConfig c1, c2;
  c1.r = 4;
  c2.r = 2;  // different ranks and modules per member
  c2.target_modules = {"q_proj", "up_proj"};
  LoraAdapter l1(*model, c1), l2(*model, c2);
  for (auto* l : {&l1, &l2})
    for (const auto& [_, layer] : (*l)->layers()) layer->lora_B.normal_(0, 0.1);
  LowRankFamily family(model, {l1->to_member(), l2->to_member(), MemberDeltas{}});
  auto b = padded_batch();
  auto out = family.forward(b.ids, nullptr, b.mask);
  for (int k = 0; k < 2; ++k) {
    auto& l = k == 0 ? l1 : l2;
    l->attach(*model);
    expect_close(out[k], model->forward(b.ids, nullptr, b.mask), 1e-5);
    l->detach();
  }
  expect_close(out[2], model->forward(b.ids, nullptr, b.mask));
  // A trained adapter on the base composes with the members' noise.
  l1->attach(*model);
  auto noise = NoiseSampler(*model, lora_noise(2)).members(2);
  auto with_lora = LowRankFamily(model, noise).forward(b.ids, nullptr, b.mask);
  for (int k = 0; k < 2; ++k) {
    auto attached = attach_member(*model, noise[k]);
    expect_close(with_lora[k], model->forward(b.ids, nullptr, b.mask), 1e-5);
  }
  l1->detach();
}

// ---------------------------------------------------------------- ensembles

TEST(Ensemble, DistinctModelsMemberByMember) {
  torch::NoGradGuard no_grad;
  auto small = make_model(19, "tiny"), other = make_model(20, "stories260k");
  Ensemble ens({small, other});
  EXPECT_EQ(ens.size(), 2);
  auto cache = ens.new_cache();
  auto b = padded_batch(5);
  auto out = ens.forward(b.ids, &cache, b.mask);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 2, 5, 512}));
  auto c0 = small->new_cache(), c1 = other->new_cache();
  EXPECT_TRUE(torch::equal(out[0], small->forward(b.ids, &c0, b.mask)));
  EXPECT_TRUE(torch::equal(out[1], other->forward(b.ids, &c1, b.mask)));
  auto next = torch::full({2, 1}, 9, torch::kInt64);
  out = ens.forward(next, &cache);
  EXPECT_TRUE(torch::equal(out[0], small->forward(next, &c0)));
  EXPECT_TRUE(torch::equal(out[1], other->forward(next, &c1)));

  auto one = Ensemble::of_one(small);
  EXPECT_TRUE(
      torch::equal(one.forward(b.ids, nullptr, b.mask)[0], small->forward(b.ids, nullptr, b.mask)));

  auto cfg = LlamaConfig::preset("tiny");
  cfg.vocab_size = 600;
  torch::manual_seed(0);
  LlamaForCausalLM wide(cfg);
  expect_error([&] { Ensemble({small, wide}); }, {"vocabulary", "600"});
}

// DraftSpec's errors name the settings as the caller spells them: flags for the CLI, config fields
// for a JSON-driven run, the member names otherwise; never a flag the caller does not have.
TEST(DraftSpec, ErrorsNameTheSettingsTheCallerUses) {
  DraftSpec spec;
  spec.noise_members = 2;  // without a draft
  try {
    spec.validate();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "draft setting 'noise_members' needs draft setting 'draft'");
  }
  spec.name_of = [](const std::string& m) { return "cfg.json: field 'drafts." + m + "'"; };
  spec.draft = "d.gguf";
  spec.sigma = 0;
  try {
    spec.validate();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "cfg.json: field 'drafts.sigma' must be > 0");
  }
}
