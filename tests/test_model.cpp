// The Llama runtime against independent references: a PyTorch implementation of transformers'
// conventions (tests/reference/hf_llama.py), the real pretrained stories260K, hand computations.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/resource.h>

#include <array>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "model/autocast.h"
#include "model/checkpoint.h"
#include "model/fast_forward.h"
#include "model/generate.h"
#include "model/io/gguf.h"
#include "model/io/safetensors.h"
#include "model/kernels.h"
#include "model/runtime.h"
#include "model/sampling.h"
#include "model/thread_pool.h"
#include "test_errors.h"
#include "test_support.h"
#include "tolerance_tensor.h"
#include "util/error.h"

namespace drafteu {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

LoadedModel random_model(LlamaConfig c, uint64_t seed) {
  torch::manual_seed(seed);
  LoadedModel m;
  m.model = LlamaForCausalLM(c);
  torch::NoGradGuard ng;
  for (auto& p : m.model->parameters()) {
    if (p.dim() == 1)
      p.uniform_(0.5, 1.5);  // norms: away from all-ones to catch mix-ups
    else
      p.normal_(0.0, 0.08);
  }
  m.model->eval();
  return m;
}

// Runs the Python reference on `dir` for `seqs`; returns one [T, V] logits tensor per sequence.
std::vector<torch::Tensor> reference_logits(const fs::path& dir,
                                            const std::vector<std::vector<int64_t>>& seqs) {
  fs::path ids = dir / "ids.json", out = dir / "ref";
  std::ofstream(ids) << json{{"sequences", seqs}}.dump();
  auto r = test::run_command(
      std::string(test::reference_python()) + " " +
      (fs::path(std::getenv("DRAFTEU_TESTS_DIR")) / "reference/hf_llama.py").string() + " " +
      dir.string() + " " + ids.string() + " " + out.string());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto shapes = json::parse(std::ifstream(out.string() + ".json"))["shapes"];
  std::ifstream bin(out.string() + ".bin", std::ios::binary);
  std::vector<torch::Tensor> result;
  for (const auto& s : shapes) {
    auto t = torch::empty({s[0].get<int64_t>(), s[1].get<int64_t>()}, torch::kFloat32);
    bin.read(reinterpret_cast<char*>(t.data_ptr<float>()), t.numel() * 4);
    result.push_back(t);
  }
  return result;
}

torch::Tensor ids_tensor(const std::vector<int64_t>& ids) {
  return torch::tensor(ids, torch::kInt64).unsqueeze(0);
}

// float32 logits along two computation paths (batch, cache, python): tests/tolerance.h.
const test::Tolerance kLogitTol = test::tolerance(test::Dtype::kFloat32, test::Op::kForward);

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// Turns the fast path on or off for a scope (the switch is process-wide).
struct FastForwardScope {
  bool was = fast_forward_enabled();
  explicit FastForwardScope(bool on) { set_fast_forward_enabled(on); }
  ~FastForwardScope() { set_fast_forward_enabled(was); }
};

struct RefCase {
  std::string name;
  LlamaConfig config;
};

std::vector<RefCase> reference_cases() {
  auto gqa = LlamaConfig::preset("tiny");  // GQA 4/2, untied
  gqa.rope_theta = 500000.0;
  gqa.rope_scaling =
      Llama3RopeScaling{8.0, 1.0, 4.0, 32};  // small original length: every band used
  auto tied = LlamaConfig::preset("tiny");
  tied.num_key_value_heads = 4, tied.tie_word_embeddings = true;
  auto head_dim = LlamaConfig::preset("tiny");  // head_dim given, != hidden / heads
  head_dim.head_dim = 24, head_dim.num_key_value_heads = 1, head_dim.num_hidden_layers = 3;
  return {{"gqa_llama3_rope", gqa}, {"tied_mha", tied}, {"explicit_head_dim", head_dim}};
}

TEST(ModelReference, LogitsMatchPyTorchWithAndWithoutCacheAndPadding) {
  torch::NoGradGuard ng;
  for (const auto& rc : reference_cases()) {
    SCOPED_TRACE(rc.name);
    fs::path dir = test::scratch_dir("ref_" + rc.name);
    save_hf_model(random_model(rc.config, 7), dir);
    std::vector<std::vector<int64_t>> seqs = {{1, 17, 300, 5, 42, 99, 511, 3, 250, 8, 77, 64},
                                              {1, 400, 2, 33, 120}};
    auto ref = reference_logits(dir, seqs);
    ASSERT_EQ(ref.size(), 2u);
    LoadedModel m = load_model(dir);
    for (bool fast : {true, false}) {  // the fused fast path and the module path
      SCOPED_TRACE(fast ? "fast path" : "module path");
      FastForwardScope path(fast);

      // Whole sequences at once.
      for (size_t i = 0; i < seqs.size(); ++i)
        EXPECT_TRUE(test::all_close(m.model->forward(ids_tensor(seqs[i]))[0], ref[i], kLogitTol));

      // KV cache: a prefill of 5, then one token at a time.
      const auto& s = seqs[0];
      auto cache = m.model->new_cache(4);  // small: exercises growth
      std::vector<torch::Tensor> rows;
      rows.push_back(m.model->forward(ids_tensor({s.begin(), s.begin() + 5}), &cache)[0]);
      for (size_t t = 5; t < s.size(); ++t)
        rows.push_back(m.model->forward(ids_tensor({s[t]}), &cache)[0]);
      EXPECT_TRUE(test::all_close(torch::cat(rows, 0), ref[0], kLogitTol));

      // A batch of different lengths, left- and right-padded.
      const int64_t T = static_cast<int64_t>(seqs[0].size()),
                    t1 = static_cast<int64_t>(seqs[1].size());
      for (bool left : {true, false}) {
        auto ids = torch::zeros({2, T}, torch::kInt64);
        auto mask = torch::zeros({2, T}, torch::kInt64);
        ids[0] = torch::tensor(seqs[0]);
        mask[0].fill_(1);
        int64_t off = left ? T - t1 : 0;
        ids[1].narrow(0, off, t1).copy_(torch::tensor(seqs[1]));
        mask[1].narrow(0, off, t1).fill_(1);
        auto out = m.model->forward(ids, nullptr, mask);
        EXPECT_TRUE(test::all_close(out[0], ref[0], kLogitTol));
        EXPECT_TRUE(test::all_close(out[1].narrow(0, off, t1), ref[1], kLogitTol))
            << (left ? "left" : "right");
      }

      // Left-padded batch decoding with a cache continues both rows correctly.
      auto ids = torch::zeros({2, 3}, torch::kInt64);
      ids[0] = torch::tensor(std::vector<int64_t>{seqs[0][0], seqs[0][1], seqs[0][2]});
      ids[1].narrow(0, 1, 2).copy_(torch::tensor(std::vector<int64_t>{seqs[1][0], seqs[1][1]}));
      auto mask = torch::ones({2, 3}, torch::kInt64);
      mask[1][0] = 0;
      auto bcache = m.model->new_cache();
      m.model->forward(ids, &bcache, mask);
      for (int step = 0; step < 2; ++step) {
        auto next =
            torch::tensor({seqs[0][3 + step], seqs[1][2 + step]}, torch::kInt64).unsqueeze(1);
        auto out = m.model->forward(next, &bcache);
        EXPECT_TRUE(test::all_close(out[0][0], ref[0][3 + step], kLogitTol));
        EXPECT_TRUE(test::all_close(out[1][0], ref[1][2 + step], kLogitTol));
      }

      // Continuous batching: caches of different lengths merged with append_rows, a rejected
      // position masked in one row, the all-masked columns compacted away; both rows continue.
      auto ca = m.model->new_cache(), cb = m.model->new_cache();
      m.model->forward(ids_tensor({s.begin(), s.begin() + 5}), &ca);
      m.model->forward(ids_tensor({seqs[1][0], seqs[1][1]}), &cb);
      ca.append_rows(cb);
      ASSERT_EQ(ca.length(), 5);
      auto two =
          torch::tensor({s[5], int64_t{7}, seqs[1][2], seqs[1][3]}, torch::kInt64).view({2, 2});
      auto out2 = m.model->forward(two, &ca);
      EXPECT_TRUE(test::all_close(out2[0][0], ref[0][5], kLogitTol));
      EXPECT_TRUE(test::all_close(out2[1], ref[1].narrow(0, 2, 2), kLogitTol));
      ca.mask_positions(0, 6, 7);  // row 0's second token (7) was rejected
      auto pad = torch::tensor({s[6], int64_t{0}}, torch::kInt64).view({2, 1});
      auto m1 = torch::tensor({int64_t{1}, int64_t{0}}, torch::kInt64).view({2, 1});
      EXPECT_TRUE(test::all_close(m.model->forward(pad, &ca, m1)[0][0], ref[0][6], kLogitTol));
      ca.mask_positions(0, 7, 8);  // forget it again: column 7 is now masked in both rows
      ca.compact(0.0);
      EXPECT_EQ(ca.length(), 7);  // columns 0-2 of row 1's left padding stay (row 0 uses them)
      auto next = torch::tensor({s[6], seqs[1][4]}, torch::kInt64).view({2, 1});
      auto out3 = m.model->forward(next, &ca);
      EXPECT_TRUE(test::all_close(out3[0][0], ref[0][6], kLogitTol));
      EXPECT_TRUE(test::all_close(out3[1][0], ref[1][4], kLogitTol));
      EXPECT_THROW(ca.mask_positions(2, 0, 1), Error);
      // Row 0 leaves: row 1's left padding is dead now, and compact drops it.
      ca.select_rows(torch::tensor({int64_t{1}}));
      ca.compact(0.0);
      ASSERT_EQ(ca.length(), 5);
      auto alone = m.model->new_cache();
      m.model->forward(ids_tensor(seqs[1]), &alone);
      for (int64_t l = 0; l < rc.config.num_hidden_layers; ++l) {
        EXPECT_LT(max_diff(ca.keys(l), alone.keys(l)), 1e-5) << "layer " << l;
        EXPECT_LT(max_diff(ca.values(l), alone.values(l)), 1e-5) << "layer " << l;
      }
    }
  }
}

TEST(ModelReference, KVCacheTruncateEqualsRecompute) {
  torch::NoGradGuard ng;
  auto m = random_model(LlamaConfig::preset("tiny"), 3);
  std::vector<int64_t> a = {1, 5, 9, 13, 200, 17}, b = {300, 301};
  auto cache = m.model->new_cache();
  m.model->forward(ids_tensor(a), &cache);
  m.model->forward(ids_tensor({7, 8, 9}), &cache);  // rejected continuation
  cache.truncate(static_cast<int64_t>(a.size()));
  auto out = m.model->forward(ids_tensor(b), &cache)[0];
  std::vector<int64_t> ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  auto full = m.model->forward(ids_tensor(ab))[0].narrow(0, static_cast<int64_t>(a.size()), 2);
  EXPECT_LT(max_diff(out, full), 1e-5);
}

TEST(ModelFormats, BadCheckpointsGiveClearErrors) {
  auto m = random_model(LlamaConfig::preset("tiny"), 1);
  fs::path dir = test::scratch_dir("bad_ckpt");
  save_hf_model(m, dir);
  // config.json disagreeing with the tensors.
  auto cfg = json::parse(std::ifstream(dir / "config.json"));
  cfg["intermediate_size"] = 100;
  std::ofstream(dir / "config.json") << cfg.dump();
  try {
    load_model(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("mlp"), std::string::npos) << msg;
    EXPECT_NE(msg.find("shape"), std::string::npos) << msg;
  }
  // A missing tensor.
  save_hf_model(m, dir);
  {
    io::SafetensorsFile f(dir / "model.safetensors");
    std::vector<io::TensorToWrite> keep;
    for (const auto& t : f.tensors())
      if (t.name != "model.layers.1.mlp.up_proj.weight")
        keep.push_back({t.name, t.dtype, t.shape, t.data, t.nbytes});
    io::write_safetensors(dir / "model2.safetensors", keep);
  }
  fs::rename(dir / "model2.safetensors", dir / "model.safetensors");
  try {
    load_model(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.mlp.up_proj.weight"), std::string::npos)
        << e.what();
  }
  // Malformed config.json.
  std::ofstream(dir / "config.json") << "{\"vocab_size\": 512,";
  try {
    load_model(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_model(dir / "nope"), Error);
}

// Peak resident memory of this process, in MiB.
double peak_rss_mib() {
  struct rusage ru = {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// Hostile configs (issue 14): sizes are checked against the tensors in the file before the
// model is built, and values that were accepted silently are errors naming file and field.
TEST(ModelFormats, HostileConfigsFailBeforeAllocating) {
  for (bool tied : {false, true}) {  // the shapes the loader checks are the model's own
    auto c = LlamaConfig::preset("tiny");
    c.tie_word_embeddings = tied;
    LlamaForCausalLM model(c);
    std::map<std::string, std::vector<int64_t>> actual;
    for (const auto& [name, t] : model->hf_state()) actual[name] = t.sizes().vec();
    EXPECT_EQ(expected_hf_shapes(c), actual);
  }
  auto m = random_model(LlamaConfig::preset("tiny"), 1);
  fs::path dir = test::scratch_dir("hostile_ckpt");
  save_hf_model(m, dir);
  const json good = json::parse(std::ifstream(dir / "config.json"));
  auto error_with = [&](const std::function<void(json&)>& edit, const std::string& file) {
    json cfg = good;
    edit(cfg);
    std::ofstream(dir / "config.json") << cfg.dump();
    const double rss0 = peak_rss_mib();
    std::string msg = "(no error)";
    try {
      load_model(dir);
    } catch (const Error& e) {
      msg = e.what();
    }
    EXPECT_LT(peak_rss_mib() - rss0, 200.0) << msg;  // nothing big was allocated first
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    std::ofstream(dir / "config.json") << good.dump();
    return msg;
  };
  const std::string cfg_file = (dir / "config.json").string();
  // 1e6 layers, or 8192 wide, over a checkpoint of a few hundred KB.
  EXPECT_NE(error_with([](json& j) { j["num_hidden_layers"] = 1000000; }, cfg_file)
                .find("num_hidden_layers"),
            std::string::npos);
  EXPECT_NE(error_with([](json& j) { j["num_hidden_layers"] = 1000; }, "model.safetensors")
                .find("not found"),
            std::string::npos);
  EXPECT_NE(error_with(
                [](json& j) {
                  j["hidden_size"] = 8192;
                  j["head_dim"] = 2048;
                },
                "model.safetensors")
                .find("config.json implies"),
            std::string::npos);
  // Values once accepted silently.
  const std::vector<std::pair<std::string, json>> bad = {{"bos_token_id", -1},
                                                         {"eos_token_id", 512},
                                                         {"eos_token_id", json{2, 9999}},
                                                         {"max_position_embeddings", 0},
                                                         {"hidden_size", 64.5},
                                                         {"num_hidden_layers", true},
                                                         {"vocab_size", "512"},
                                                         {"max_position_embeddings", -3}};
  for (const auto& [field, value] : bad) {
    SCOPED_TRACE(field + " = " + value.dump());
    EXPECT_NE(error_with([&](json& j) { j[field] = value; }, cfg_file).find(field),
              std::string::npos);
  }
  // generation_config.json ids outside the vocabulary, and wrong types.
  for (const json& gen : {json{{"eos_token_id", 100000}}, json{{"bos_token_id", -2}},
                          json{{"top_k", 1.5}}, json{{"eos_token_id", json::array({1, "x"})}}}) {
    std::ofstream(dir / "generation_config.json") << gen.dump();
    const std::string msg = test::error_of([&] { load_model(dir); });
    EXPECT_NE(msg.find("generation_config.json"), std::string::npos) << gen.dump() << ": " << msg;
  }
  fs::remove(dir / "generation_config.json");
  EXPECT_NO_THROW(load_model(dir));
}

// A GGUF whose attn_q is 1-D: "Dimension out of range" with no file named, before.
TEST(ModelFormats, GgufTensorShapesCheckedAgainstMetadata) {
  const io::GgufFile src(test::stories260k_gguf());
  std::vector<io::GgufTensorToWrite> tensors;
  for (const auto& t : src.tensors()) {
    std::vector<int64_t> shape = t.shape;
    if (t.name == "blk.0.attn_q.weight") shape = {t.shape[0] * t.shape[1]};
    tensors.push_back({t.name, t.type, shape, t.data, t.nbytes});
  }
  const fs::path file = test::scratch_dir("gguf_1d_q") / "bad.gguf";
  io::write_gguf(file, src.metadata(), tensors, src.alignment());
  const std::string msg = test::error_of([&] { load_model(file); });
  EXPECT_NE(msg.find(file.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("blk.0.attn_q.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("shape"), std::string::npos) << msg;
}

TEST(Sampling, WarpsMatchHandComputation) {
  auto logits = torch::log(torch::tensor({0.5, 0.2, 0.15, 0.1, 0.05}, torch::kFloat32));
  // top-k 2 keeps 0.5 and 0.2 -> 5/7, 2/7.
  auto p = warped_log_probs(logits, {1.0, 2, 1.0}).exp();
  EXPECT_NEAR(p[0].item<double>(), 5.0 / 7, 1e-6);
  EXPECT_NEAR(p[1].item<double>(), 2.0 / 7, 1e-6);
  EXPECT_EQ(p[2].item<double>(), 0.0);
  // top-p 0.8 keeps the smallest prefix reaching 0.8: 0.5+0.2+0.15 = 0.85.
  p = warped_log_probs(logits, {1.0, 0, 0.8}).exp();
  EXPECT_NEAR(p[2].item<double>(), 0.15 / 0.85, 1e-6);
  EXPECT_EQ(p[3].item<double>(), 0.0);
  // temperature 0.5 squares the probabilities before renormalising.
  p = warped_log_probs(logits, {0.5, 0, 1.0}).exp();
  double z = 0.25 + 0.04 + 0.0225 + 0.01 + 0.0025;
  EXPECT_NEAR(p[1].item<double>(), 0.04 / z, 1e-6);
  // greedy: one-hot at the argmax.
  p = warped_log_probs(logits, {0.0, 0, 1.0}).exp();
  EXPECT_EQ(p[0].item<double>(), 1.0);
}

TEST(Sampling, SeededAndUnbiased) {
  auto probs = torch::tensor({0.1, 0.6, 0.3}, torch::kFloat64);
  Sampler a(42), b(42);
  std::vector<int> counts(3);
  for (int i = 0; i < 30000; ++i) {
    int64_t x = a.sample(probs);
    ASSERT_EQ(x, b.sample(probs));
    counts[static_cast<size_t>(x)]++;
  }
  // Chi-square with 2 degrees of freedom; 13.8 is the 0.001 critical value.
  double chi2 = 0;
  for (int i = 0; i < 3; ++i) {
    double e = 30000 * probs[i].item<double>();
    chi2 += (counts[static_cast<size_t>(i)] - e) * (counts[static_cast<size_t>(i)] - e) / e;
  }
  EXPECT_LT(chi2, 13.8);
}

// The real pretrained model: a children's story from BOS, and GGUF == converted HF directory.
TEST(Stories260K, GreedyStoryAndConversionsAgree) {
  torch::NoGradGuard ng;
  LoadedModel g = load_model(test::stories260k_gguf());
  ASSERT_TRUE(g.tokenizer);
  EXPECT_EQ(g.config().num_hidden_layers, 5);
  EXPECT_EQ(g.config().num_key_value_heads, 4);
  GenerateOptions go;
  go.sampling.temperature = 0;
  go.max_new_tokens = 60;
  std::vector<int64_t> bos = {*g.generation.bos_token_id};
  auto toks = generate(*g.model, bos, go);
  std::vector<int32_t> ids;
  for (const auto& t : toks) ids.push_back(static_cast<int32_t>(t.id));
  std::string text = g.tokenizer->decode(ids);
  EXPECT_EQ(text.rfind("Once upon a time", 0), 0u) << text;

  fs::path dir = test::scratch_dir("stories_hf");
  save_hf_model(g, dir);
  LoadedModel h = load_model(dir);
  std::vector<int64_t> seq = bos;
  for (auto id : ids) seq.push_back(id);
  auto lg = g.model->forward(ids_tensor(seq))[0];
  EXPECT_LT(max_diff(lg, h.model->forward(ids_tensor(seq))[0]), 1e-5);
  auto toks_h = generate(*h.model, bos, go);
  ASSERT_EQ(toks_h.size(), toks.size());
  for (size_t i = 0; i < toks.size(); ++i) EXPECT_EQ(toks_h[i].id, toks[i].id);

  // The PyTorch reference agrees on the real weights (this checks the GGUF row un-permutation).
  auto ref = reference_logits(dir, {seq});
  EXPECT_TRUE(test::all_close(lg, ref[0], kLogitTol));

  // HF -> GGUF -> load: the same logits again.
  fs::path gguf = dir / "roundtrip.gguf";
  save_gguf_model(h, gguf);
  LoadedModel g2 = load_model(gguf);
  EXPECT_LT(max_diff(lg, g2.model->forward(ids_tensor(seq))[0]), 1e-6);
}

// ---- The fused fast path (model/fast_forward) against the module path ----

// |a - b| relative to the logits' magnitude.
double rel_diff(const torch::Tensor& fast, const torch::Tensor& ref) {
  return max_diff(fast, ref) / std::max(1.0, ref.abs().max().item<double>());
}

// Runs the same calls through the fast path and the module path of one model, each with its own
// cache, and checks that every output agrees.
struct TwoPaths {
  LlamaForCausalLMImpl& m;
  KVCache fast_cache, ref_cache;
  explicit TwoPaths(LlamaForCausalLMImpl& model)
      : m(model), fast_cache(model.new_cache(4)), ref_cache(model.new_cache(4)) {}
  void step(const torch::Tensor& ids, const torch::Tensor& mask = {}, bool last_only = false,
            bool use_cache = true) {
    EXPECT_EQ(fast_forward_refusal(m, ids, use_cache ? &fast_cache : nullptr, mask), "");
    auto a = m.forward(ids, use_cache ? &fast_cache : nullptr, mask, last_only);
    torch::Tensor b;
    {
      FastForwardScope module_path(false);
      b = m.forward(ids, use_cache ? &ref_cache : nullptr, mask, last_only);
    }
    ASSERT_EQ(a.sizes(), b.sizes());
    EXPECT_LT(rel_diff(a, b), 2e-5) << "ids " << ids.sizes();
  }
};

TEST(FastPath, MatchesModulePathAcrossShapesBatchesAndThreads) {
  torch::NoGradGuard ng;
  std::vector<std::pair<std::string, LoadedModel>> models;
  for (const auto& rc : reference_cases()) models.emplace_back(rc.name, random_model(rc.config, 5));
  models.emplace_back("stories260K", load_model(test::stories260k_gguf()));
  auto wide = LlamaConfig::preset("stories15m");  // large enough to split work over threads
  wide.num_hidden_layers = 2;
  models.emplace_back("15M-shape", random_model(wide, 9));
  const int prev_threads = torch::get_num_threads();
  for (auto& [name, lm] : models) {
    for (int threads : {1, 2}) {
      SCOPED_TRACE(name + " threads " + std::to_string(threads));
      torch::set_num_threads(threads);
      auto& m = *lm.model;
      const int64_t V = m.config().vocab_size;
      torch::manual_seed(11);
      TwoPaths p(m);
      // No cache, a whole sequence; then a prefill and batch-1 decode with cache growth.
      p.step(torch::randint(V, {1, 12}), {}, false, /*use_cache=*/false);
      p.step(torch::randint(V, {1, 5}));
      for (int i = 0; i < 4; ++i) p.step(torch::randint(V, {1, 1}), {}, /*last_only=*/true);

      // Left-padded batch of 3: prefill, then decode steps (one with a padding token).
      TwoPaths q(m);
      auto mask = torch::ones({3, 6}, torch::kInt64);
      mask[1].narrow(0, 0, 2).fill_(0);
      mask[2].narrow(0, 0, 5).fill_(0);
      q.step(torch::randint(V, {3, 6}), mask);
      for (int i = 0; i < 3; ++i) {
        auto m1 = torch::ones({3, 1}, torch::kInt64);
        if (i == 1) m1[2][0] = 0;
        mask = torch::cat({mask, m1}, 1);
        q.step(torch::randint(V, {3, 1}), i == 0 ? m1 : mask, true);
      }
      // Continuous-batching edits to the cache, applied to both caches alike.
      q.fast_cache.mask_positions(0, 6, 7);
      q.ref_cache.mask_positions(0, 6, 7);
      q.step(torch::randint(V, {3, 2}));

      // Batch 9 decode (the GEMM branch) and a last_only prefill of 20.
      TwoPaths r(m);
      r.step(torch::randint(V, {9, 20}), {}, true);
      for (int i = 0; i < 2; ++i) r.step(torch::randint(V, {9, 1}));
    }
  }
  torch::set_num_threads(prev_threads);
}

struct ScaledDelta : LinearDelta {
  torch::Tensor w;
  explicit ScaledDelta(const torch::Tensor& weight) : w(weight * 0.5) {}
  torch::Tensor forward(const torch::Tensor& x) const override { return torch::matmul(x, w.t()); }
};

TEST(FastPath, FallsBackToTheModulePathWhereItCannotRun) {
  auto lm = random_model(LlamaConfig::preset("tiny"), 4);
  auto& m = *lm.model;
  auto ids = torch::tensor({1, 7, 9}, torch::kInt64).unsqueeze(0);
  {
    torch::NoGradGuard ng;
    EXPECT_EQ(fast_forward_refusal(m, ids, nullptr, {}), "");
    // Adapters on a linear layer: the module path runs them, so the output changes.
    auto plain = m.forward(ids);
    auto& q = m.linear("model.layers.1.self_attn.q_proj");
    auto delta = std::make_shared<ScaledDelta>(q.weight);
    q.add_delta(delta);
    EXPECT_NE(fast_forward_refusal(m, ids, nullptr, {}).find("raw form"), std::string::npos);
    auto with = m.forward(ids);
    EXPECT_GT(max_diff(with, plain), 1e-3);
    {
      FastForwardScope module_path(false);
      EXPECT_LT(max_diff(m.forward(ids), with), 1e-6);
    }
    q.remove_delta(delta.get());
    EXPECT_EQ(fast_forward_refusal(m, ids, nullptr, {}), "");

    // A cache a family expanded (layer batch 2 for a batch of 1).
    auto cache = m.new_cache();
    cache.reserve(1, 2, m.config().num_key_value_heads, 1, m.config().head_dim,
                  torch::TensorOptions().dtype(torch::kFloat32));
    EXPECT_NE(fast_forward_refusal(m, ids, &cache, {}).find("expanded"), std::string::npos);

    // Autocast and bfloat16 weights.
    {
      Autocast ac(ComputeDtype::BF16);
      EXPECT_NE(fast_forward_refusal(m, ids, nullptr, {}).find("autocast"), std::string::npos);
    }
    auto bf = random_model(LlamaConfig::preset("tiny"), 4);
    bf.model->to(torch::kBFloat16);
    EXPECT_NE(fast_forward_refusal(*bf.model, ids, nullptr, {}).find("float32"), std::string::npos);

    // A token outside the vocabulary: one clear error.
    auto bad = torch::tensor({int64_t{1}, m.config().vocab_size}, torch::kInt64).unsqueeze(0);
    try {
      m.forward(bad);
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("vocabulary"), std::string::npos) << e.what();
    }
  }
  // Training needs gradients: the module path.
  EXPECT_NE(fast_forward_refusal(m, ids, nullptr, {}).find("gradients"), std::string::npos);
  auto logits = m.forward(ids);
  EXPECT_TRUE(logits.requires_grad());
}

// The forward's results do not depend on its thread count: products split by output feature sum
// each feature the same way on any thread; only OpenBLAS's GEMM may round otherwise.
TEST(FastPath, LogitsAgreeAtOneAndTwoThreads) {
  torch::NoGradGuard ng;
  std::vector<std::pair<std::string, LoadedModel>> models;
  models.emplace_back("gqa", random_model(reference_cases()[0].config, 5));
  models.emplace_back("stories260K", load_model(test::stories260k_gguf()));
  auto wide = LlamaConfig::preset("stories15m");
  wide.num_hidden_layers = 2;
  models.emplace_back("15M-shape", random_model(wide, 9));
  const int prev_threads = torch::get_num_threads();
  for (auto& [name, lm] : models) {
    SCOPED_TRACE(name);
    auto& m = *lm.model;
    const int64_t V = m.config().vocab_size;
    // Prefill 12 then 4 decode steps at batch 1; a left-padded batch of 3; a batch-9 prefill
    // (the GEMM branch) and a batch-9 decode step.
    auto run = [&](int threads) {
      torch::set_num_threads(threads);
      torch::manual_seed(3);
      std::vector<torch::Tensor> out;
      auto cache = m.new_cache(4);
      out.push_back(m.forward(torch::randint(V, {1, 12}), &cache));
      for (int i = 0; i < 4; ++i)
        out.push_back(m.forward(torch::randint(V, {1, 1}), &cache, {}, true));
      auto mask = torch::ones({3, 6}, torch::kInt64);
      mask[2].narrow(0, 0, 4).fill_(0);
      auto padded = m.new_cache(4);
      out.push_back(m.forward(torch::randint(V, {3, 6}), &padded, mask));
      auto wide_cache = m.new_cache(4);
      out.push_back(m.forward(torch::randint(V, {9, 20}), &wide_cache, {}, true));
      out.push_back(m.forward(torch::randint(V, {9, 1}), &wide_cache));
      return out;
    };
    const auto one = run(1), two = run(2);
    ASSERT_EQ(one.size(), two.size());
    for (size_t i = 0; i < one.size(); ++i) EXPECT_LT(rel_diff(two[i], one[i]), 1e-5) << i;
  }
  torch::set_num_threads(prev_threads);
}

// The many-row kernel on shapes with every kind of remainder (input length not a multiple of 16,
// output features not of 4, input rows not of 4 or 16), whole and split at a 4-row boundary as
// the threads split it.
TEST(Kernels, MatmulRowsMatchesFloat64OnRaggedShapes) {
  if (!kernels::has_matmul()) GTEST_SKIP() << "no AVX-512 on this CPU";
  torch::manual_seed(2);
  for (auto [in, out, rows] :
       {std::array<int64_t, 3>{37, 13, 11}, {16, 4, 4}, {288, 10, 17}, {5, 7, 3}, {768, 8, 20}}) {
    SCOPED_TRACE(std::to_string(in) + "x" + std::to_string(out) + " rows " + std::to_string(rows));
    auto w = torch::randn({out, in}), x = torch::randn({rows, in});
    auto ref = torch::matmul(x.to(torch::kFloat64), w.to(torch::kFloat64).t());
    auto whole = torch::zeros({rows, out}), split = torch::zeros({rows, out});
    std::vector<float> packed(static_cast<size_t>(kernels::packed_size(rows, in)));
    kernels::pack_rows(x.data_ptr<float>(), in, rows, in, packed.data());
    kernels::matmul_rows(w.data_ptr<float>(), in, 0, out, packed.data(), rows,
                         whole.data_ptr<float>(), out);
    const int64_t cut = out > 4 ? 4 : out;
    kernels::matmul_rows(w.data_ptr<float>(), in, 0, cut, packed.data(), rows,
                         split.data_ptr<float>(), out);
    kernels::matmul_rows(w.data_ptr<float>(), in, cut, out, packed.data(), rows,
                         split.data_ptr<float>(), out);
    EXPECT_LT(max_diff(whole, ref), 1e-4 * std::sqrt(static_cast<double>(in)));
    EXPECT_TRUE(torch::equal(whole, split));
  }
}

TEST(ThreadPool, EveryChunkRunsOnceOnAtMostTheThreadsAsked) {
  // Outside a forward: on the caller alone.
  std::vector<int> ran(10, 0);
  parallel_chunks(10, [&](int64_t i) { ++ran[static_cast<size_t>(i)]; });
  EXPECT_EQ(ran, std::vector<int>(10, 1));

  std::mutex mu;
  std::set<std::thread::id> seen;
  {
    ForwardThreads threads(2);
    ASSERT_EQ(threads.threads(), 2);
    for (int job = 0; job < 2000; ++job) {
      const int64_t n = 1 + job % 37;
      std::vector<std::atomic<int>> count(static_cast<size_t>(n));
      parallel_chunks(n, [&](int64_t i) {
        ++count[static_cast<size_t>(i)];
        if (i == 0 || i == n - 1) {
          std::lock_guard lock(mu);
          seen.insert(std::this_thread::get_id());
        }
      });
      for (const auto& c : count) ASSERT_EQ(c.load(), 1) << "job " << job;
      if (job % 500 == 0) rest_forward_threads();  // the next job wakes the workers again
    }
    // A nested forward, or another thread's forward meanwhile, runs on its own caller.
    ForwardThreads nested(2);
    EXPECT_EQ(nested.threads(), 1);
    std::thread other([] {
      ForwardThreads mine(2);
      EXPECT_EQ(mine.threads(), 1);
      int64_t sum = 0;
      parallel_chunks(5, [&](int64_t i) { sum += i; });
      EXPECT_EQ(sum, 10);
    });
    other.join();
  }
  EXPECT_LE(seen.size(), 2u);  // never more threads than asked

  // Between forwards the workers sleep: the process uses (next to) no CPU while idle.
  auto cpu_ms = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 +
           (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
  };
  const double before = cpu_ms();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_LT(cpu_ms() - before, 30.0);
}

TEST(Runtime, OpenblasCoretypeChoice) {
  // OpenBLAS 0.3.21 on Zen 5 picks Prescott: AVX-512 CPUs get SkylakeX, AVX2 ones Haswell.
  EXPECT_EQ(better_openblas_coretype("Prescott", true, true, nullptr), "SkylakeX");
  EXPECT_EQ(better_openblas_coretype("Prescott", false, true, nullptr), "Haswell");
  EXPECT_EQ(better_openblas_coretype("Zen", true, true, nullptr), "SkylakeX");
  EXPECT_EQ(better_openblas_coretype("Prescott", true, true, ""), "SkylakeX");  // empty = unset
  // Already right, nothing better to offer, not OpenBLAS, or the user chose: keep.
  EXPECT_EQ(better_openblas_coretype("Zen", false, true, nullptr), "");
  EXPECT_EQ(better_openblas_coretype("SkylakeX", true, true, nullptr), "");
  EXPECT_EQ(better_openblas_coretype("Cooperlake", true, true, nullptr), "");
  EXPECT_EQ(better_openblas_coretype("Prescott", false, false, nullptr), "");
  EXPECT_EQ(better_openblas_coretype("", true, true, nullptr), "");
  EXPECT_EQ(better_openblas_coretype("Prescott", true, true, "Haswell"), "");
}

}  // namespace
}  // namespace drafteu
