// Distillation toolkit against independent references: hand-written divergences in float64,
// finite differences, uninterrupted runs (for resume), separate single-row generation (for
// batching) and the real stories260K model (for a training run that must reduce held-out KL).
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "distill/checkpoint.h"
#include "distill/config.h"
#include "distill/data.h"
#include "distill/drafts.h"
#include "distill/forward.h"
#include "distill/gen_data.h"
#include "distill/gkd.h"
#include "distill/losses.h"
#include "distill/manifest.h"
#include "distill/minillm.h"
#include "distill/osd.h"
#include "distill/schedule.h"
#include "distill/trainer.h"
#include "family/peft.h"
#include "model/autocast.h"
#include "model/checkpoint.h"
#include "model/generate.h"
#include "model/generate_batch.h"
#include "test_errors.h"
#include "test_support.h"
#include "util/build_info.h"
#include "util/error.h"
#include "util/file.h"

namespace fs = std::filesystem;
using namespace drafteu;
using namespace drafteu::distill;
using json = nlohmann::json;

namespace {

LlamaForCausalLM tiny_model(uint64_t seed) {
  torch::manual_seed(seed);
  LlamaForCausalLM m(LlamaConfig::preset("tiny"));
  m->eval();
  return m;
}

// Synthetic samples: `prompts` prompts x `per` responses of random tokens.
std::vector<Sample> synthetic_samples(int64_t prompts, int64_t per, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<Sample> out;
  for (int64_t p = 0; p < prompts; ++p)
    for (int64_t k = 0; k < per; ++k) {
      Sample s;
      s.prompt_index = p, s.member = 0, s.sample = k;
      auto ids = torch::randint(3, 500, {4 + (p % 3) + 6 + k}, torch::kInt64);
      std::vector<int64_t> v(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
      s.prompt_ids.assign(v.begin(), v.begin() + 4 + (p % 3));
      s.response_ids.assign(v.begin() + 4 + (p % 3), v.end());
      out.push_back(s);
    }
  return out;
}

// Hand references in float64: log-softmax and the divergences, one row at a time.
std::vector<double> log_softmax_row(const torch::Tensor& row) {
  auto r = row.to(torch::kFloat64).contiguous();
  std::vector<double> x(r.data_ptr<double>(), r.data_ptr<double>() + r.numel());
  double m = x[0];
  for (double v : x) m = std::max(m, v);
  double s = 0;
  for (double v : x) s += std::exp(v - m);
  for (double& v : x) v = v - m - std::log(s);
  return x;
}
double kl_hand(const std::vector<double>& lp, const std::vector<double>& lq) {
  double s = 0;
  for (size_t i = 0; i < lp.size(); ++i) s += std::exp(lp[i]) * (lp[i] - lq[i]);
  return s;
}
double mean_rows(
    const torch::Tensor& a, const torch::Tensor& b,
    const std::function<double(const std::vector<double>&, const std::vector<double>&)>& f) {
  double s = 0;
  for (int64_t n = 0; n < a.size(0); ++n) s += f(log_softmax_row(a[n]), log_softmax_row(b[n]));
  return s / static_cast<double>(a.size(0));
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<torch::Tensor> adapter_tensors(LoraAdapterImpl& a) {
  std::vector<torch::Tensor> out;
  for (auto& p : a.parameters()) out.push_back(p.detach().clone());
  return out;
}

}  // namespace

// ---------------------------------------------------------------- losses

TEST(Losses, OsdConvergesToArithmeticMeanOfTeachers) {
  torch::manual_seed(1);
  const int64_t k = 4, v = 6;
  auto teachers = torch::randn({k, 1, v}, torch::kFloat64) * 2.0;
  auto z = torch::zeros({1, v}, torch::dtype(torch::kFloat64).requires_grad(true));
  torch::optim::Adam opt({z}, torch::optim::AdamOptions(0.05));
  for (int i = 0; i < 3000; ++i) {
    opt.zero_grad();
    forward_kl_loss(z, teachers).backward();
    opt.step();
  }
  auto q = torch::softmax(z.detach(), -1)[0];
  auto mean = torch::softmax(teachers, -1).mean(0)[0];
  auto geo = torch::softmax(torch::log_softmax(teachers, -1).mean(0), -1)[0];
  EXPECT_LT((q - mean).abs().max().item<double>(), 1e-3);
  EXPECT_GT((q - geo).abs().max().item<double>(), 1e-2);
  for (int64_t j = 0; j < k; ++j)
    EXPECT_GT((q - torch::softmax(teachers[j][0], -1)).abs().max().item<double>(), 1e-2);
}

TEST(Losses, ForwardKLValueAndGradientMatchHandReference) {
  torch::manual_seed(2);
  auto s = torch::randn({5, 7}, torch::kFloat64).requires_grad_(true);
  auto t = torch::randn({3, 5, 7}, torch::kFloat64);
  auto loss = forward_kl_loss(s, t);
  double ref = 0;
  for (int64_t j = 0; j < 3; ++j) ref += mean_rows(t[j], s.detach(), kl_hand) / 3.0;
  EXPECT_NEAR(loss.item<double>(), ref, 1e-12);
  loss.backward();
  // d/ds of mean_n mean_k KL(p_k || softmax(s)) = (softmax(s) - mean_k p_k) / N.
  auto expect = (torch::softmax(s.detach(), -1) - torch::softmax(t, -1).mean(0)) / 5.0;
  EXPECT_LT((s.grad() - expect).abs().max().item<double>(), 1e-12);
}

TEST(Losses, GkdEndpointsAreForwardAndReverseKL) {
  torch::manual_seed(3);
  auto s = torch::randn({4, 9}, torch::kFloat64), t = torch::randn({4, 9}, torch::kFloat64);
  EXPECT_NEAR(generalized_jsd_loss(s, t, 0.0).item<double>(), mean_rows(t, s, kl_hand), 1e-12);
  EXPECT_NEAR(generalized_jsd_loss(s, t, 1.0).item<double>(), mean_rows(s, t, kl_hand), 1e-12);
}

TEST(Losses, GkdInteriorMatchesHandComputationOnThreeTokens) {
  // Student probabilities (0.5, 0.3, 0.2), teacher (0.1, 0.6, 0.3), beta 0.3:
  // M = 0.3·p_T + 0.7·q_S = (0.38, 0.39, 0.23);
  // JSD = 0.3·Σ p_T log(p_T/M) + 0.7·Σ q_S log(q_S/M).
  const double qs[3] = {0.5, 0.3, 0.2}, pt[3] = {0.1, 0.6, 0.3}, beta = 0.3;
  double ref = 0;
  for (int i = 0; i < 3; ++i) {
    const double m = beta * pt[i] + (1 - beta) * qs[i];
    ref += beta * pt[i] * std::log(pt[i] / m) + (1 - beta) * qs[i] * std::log(qs[i] / m);
  }
  auto s = torch::log(torch::tensor({0.5, 0.3, 0.2}, torch::kFloat64)).unsqueeze(0);
  auto t = torch::log(torch::tensor({0.1, 0.6, 0.3}, torch::kFloat64)).unsqueeze(0);
  EXPECT_NEAR(generalized_jsd_loss(s, t, beta).item<double>(), ref, 1e-12);
  EXPECT_NEAR(
      ref,
      0.3 * (0.1 * std::log(0.1 / 0.38) + 0.6 * std::log(0.6 / 0.39) + 0.3 * std::log(0.3 / 0.23)) +
          0.7 * (0.5 * std::log(0.5 / 0.38) + 0.3 * std::log(0.3 / 0.39) +
                 0.2 * std::log(0.2 / 0.23)),
      1e-15);
  EXPECT_THROW(generalized_jsd_loss(s, t, 1.5), Error);
}

TEST(Losses, MiniLLMSingleStepGradientMatchesFiniteDifferences) {
  torch::manual_seed(4);
  auto s = torch::randn({3, 5}, torch::kFloat64);
  auto t = torch::randn({3, 5}, torch::kFloat64);
  auto sv = s.clone().requires_grad_(true);
  reverse_kl_loss(sv, t).backward();
  const double h = 1e-6;
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t i = 0; i < 5; ++i) {
      auto sp = s.clone(), sm = s.clone();
      sp[n][i] += h;
      sm[n][i] -= h;
      const double fd = (mean_rows(sp, t, kl_hand) - mean_rows(sm, t, kl_hand)) / (2 * h);
      EXPECT_NEAR(sv.grad()[n][i].item<double>(), fd, 1e-7) << n << "," << i;
    }
  // The long-term term: rewards r = log p(y) − log q(y), R_{t+1} = mean of the later r.
  auto mask = torch::tensor({1, 1, 1}, torch::kBool).unsqueeze(0);
  auto y = torch::tensor({1, 4, 2}, torch::kInt64);
  auto s2 = s.clone().requires_grad_(true);
  auto terms = minillm_loss(s2, t, y, mask);
  std::vector<double> r(3);
  for (int64_t n = 0; n < 3; ++n)
    r[n] =
        log_softmax_row(t[n])[y[n].item<int64_t>()] - log_softmax_row(s[n])[y[n].item<int64_t>()];
  const double R[3] = {(r[1] + r[2]) / 2, r[2], 0.0};
  double ref = 0;
  for (int64_t n = 0; n < 3; ++n) ref -= R[n] * log_softmax_row(s[n])[y[n].item<int64_t>()] / 3.0;
  EXPECT_NEAR(terms.long_term.item<double>(), ref, 1e-12);
  EXPECT_NEAR(terms.single_step.item<double>(), mean_rows(s, t, kl_hand), 1e-12);
}

TEST(Schedule, WarmupLinearCosine) {
  ScheduleConfig s;
  s.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 0, 110), 0.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 5, 110), 0.5);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 60, 110), 0.5);
  s.kind = "cosine";
  EXPECT_NEAR(lr_multiplier(s, 60, 110), 0.5, 1e-12);
  EXPECT_NEAR(lr_multiplier(s, 10, 110), 1.0, 1e-12);
  s.warmup_steps = 0, s.warmup_ratio = 0.1;
  EXPECT_EQ(s.warmup(100), 10);
}

// ---------------------------------------------------------------- data

TEST(Data, PartitionsAreDisjointSeededAndCover) {
  std::vector<int64_t> idx(101);
  for (int64_t i = 0; i < 101; ++i) idx[static_cast<size_t>(i)] = i;
  std::set<int64_t> all;
  size_t total = 0;
  for (int64_t s = 0; s < 3; ++s) {
    auto part = prompt_partition(idx, 3, s, 7);
    EXPECT_GE(part.size(), 33u);
    total += part.size();
    all.insert(part.begin(), part.end());
  }
  EXPECT_EQ(total, 101u);
  EXPECT_EQ(all.size(), 101u);
  EXPECT_NE(prompt_partition(idx, 3, 0, 7), prompt_partition(idx, 3, 0, 8));
  EXPECT_THROW(prompt_partition(idx, 3, 3, 7), Error);
}

TEST(Data, BatchMasksOnlyResponseTokens) {
  Sample a, b;
  a.prompt_ids = {1, 5, 6}, a.response_ids = {7, 8};
  b.prompt_ids = {1, 9}, b.response_ids = {10, 11, 12, 13};
  auto batch = make_batch({&a, &b}, 5);
  EXPECT_EQ(batch.ids.sizes(), (std::vector<int64_t>{2, 5}));
  // Row 0: logits at 2 and 3 predict 7 and 8. Row 1 is cut to 5 tokens: 10, 11, 12.
  EXPECT_TRUE(torch::equal(batch.loss_mask[0], torch::tensor({0, 0, 1, 1, 0}).to(torch::kBool)));
  EXPECT_TRUE(torch::equal(batch.loss_mask[1], torch::tensor({0, 1, 1, 1, 0}).to(torch::kBool)));
  EXPECT_EQ(batch.targets[1][3].item<int64_t>(), 12);
  EXPECT_EQ(batch.loss_tokens(), 5);
}

TEST(Data, MalformedInputNamesFileAndLine) {
  auto dir = test::scratch_dir("distill_bad_input");
  std::ofstream(dir / "s.jsonl") << sample_to_json(synthetic_samples(1, 1, 0)[0]).dump()
                                 << "\n{\"prompt_index\": 1,\n";
  try {
    read_samples(dir / "s.jsonl");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("s.jsonl:2"), std::string::npos) << e.what();
  }
  // A non-string "prompt" escaped as nlohmann's type_error, which names no file (fuzz_jsonl).
  json bad = sample_to_json(synthetic_samples(1, 1, 0)[0]);
  bad["prompt"] = 5;
  std::ofstream(dir / "t.jsonl") << bad.dump() << "\n";
  EXPECT_NE(test::error_of([&] {
              read_samples(dir / "t.jsonl");
            }).find("t.jsonl:1: field 'prompt' has the wrong type"),
            std::string::npos);
  // A float where an integer belongs was cast with undefined behaviour (UBSan in fuzz_jsonl).
  for (const char* key : {"seed", "prompt_index"}) {
    json f = sample_to_json(synthetic_samples(1, 1, 0)[0]);
    f[key] = 2.8e31;
    std::ofstream(dir / "f.jsonl") << f.dump() << "\n";
    EXPECT_NE(test::error_of([&] {
                read_samples(dir / "f.jsonl");
              }).find(std::string("f.jsonl:1: field '") + key + "' must hold integers"),
              std::string::npos)
        << key;
  }
  std::ofstream(dir / "q.jsonl") << "{\"answer\": \"4\"}\n";
  try {
    read_gsm8k(dir / "q.jsonl");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'question'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_draft_strategy("xdd"), Error);
  const TrainConfig defaults;
  EXPECT_THROW(train_config_from_json(json{{"lrr", 1}}, "cfg", defaults), Error);
  EXPECT_THROW(read_samples(dir / "missing.jsonl"), Error);
}

// ---------------------------------------------------------------- generation

TEST(GenerateBatch, RowsDoNotDependOnBatchComposition) {
  auto model = tiny_model(11);
  std::vector<std::vector<int64_t>> prompts = {{1, 20, 30}, {1, 40}, {1, 50, 60, 70, 80}};
  std::vector<uint64_t> seeds = {5, 6, 7};
  BatchGenerateOptions o;
  o.max_new_tokens = 12;
  o.stop_ids = {2, 100, 101, 102};  // some rows stop early
  auto together = generate_batch(*model, prompts, seeds, o);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(generate_batch(*model, {prompts[i]}, {seeds[i]}, o)[0], together[i]) << i;
    GenerateOptions g;
    g.max_new_tokens = o.max_new_tokens, g.seed = seeds[i], g.stop_ids = o.stop_ids;
    std::vector<int64_t> single;
    for (const auto& t : generate(*model, prompts[i], g)) single.push_back(t.id);
    EXPECT_EQ(single, together[i]) << i;
  }
}

TEST(GenData, ResumeAfterKillGivesSameLinesWithoutDuplicates) {
  auto dir = test::scratch_dir("distill_gen_data");
  auto target = load_model(test::stories260k_gguf());
  GenDataConfig c;
  c.prompts = test::shared_dir() / "data/gsm8k/test.jsonl";
  c.max_prompts = 3;
  c.members = {-1, 0};
  c.responses = 2;
  c.max_new_tokens = 12;
  c.batch_size = 4;
  c.progress = false;
  auto full = generate_data(target, c, dir / "full.jsonl");
  EXPECT_EQ(full.written, 12);
  auto c2 = c;
  c2.stop_after = 5;
  generate_data(target, c2, dir / "resumed.jsonl");
  std::ofstream(dir / "resumed.jsonl", std::ios::app) << "{\"prompt_index\": 2, \"memb";  // torn
  auto r = generate_data(target, c, dir / "resumed.jsonl");
  EXPECT_TRUE(r.dropped_torn_line);
  EXPECT_EQ(r.existing, 5);
  EXPECT_EQ(r.written, 7);
  EXPECT_EQ(read_lines(dir / "resumed.jsonl"), read_lines(dir / "full.jsonl"));
  auto samples = read_samples(dir / "full.jsonl");
  std::set<std::tuple<int64_t, int64_t, int64_t>> keys;
  for (const auto& s : samples) keys.emplace(s.prompt_index, s.member, s.sample);
  EXPECT_EQ(keys.size(), 12u);
  EXPECT_EQ(generate_data(target, c, dir / "full.jsonl").written, 0);  // nothing left to do
}

// ---------------------------------------------------------------- OSD teachers (B.1)

bool same_deltas(const MemberDeltas& a, const MemberDeltas& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, t] : a) {
    const auto it = b.find(name);
    if (it == b.end() || !torch::equal(t.a, it->second.a) || !torch::equal(t.b, it->second.b) ||
        t.scale != it->second.scale)
      return false;
  }
  return true;
}

TEST(Osd, FamilyTeachersAreTheFamilysMembersSampledTwoAtATime) {
  auto target = tiny_model(4);
  OsdConfig osd;  // the default follows B.1: teachers from the M fixed members, N_teacher = 2
  ASSERT_EQ(osd.teachers, "family");
  osd.teacher_noise.seed = 77;
  osd.teacher_noise.rank = 2;
  osd.family_members = 3;
  const NoiseSampler family(*target, osd.teacher_noise);
  std::vector<int> used(3, 0);
  for (int64_t step = 0; step < 12; ++step)
    for (int64_t micro = 0; micro < 2; ++micro) {
      const StepContext ctx{5, step, micro};
      const auto idx = osd_teacher_members(osd, ctx);
      ASSERT_EQ(idx.size(), 2u);
      EXPECT_NE(idx[0], idx[1]);
      const auto teachers = OsdTeachers(*target, osd).for_step(ctx);
      ASSERT_EQ(teachers.size(), 2u);
      for (size_t k = 0; k < 2; ++k) {
        ASSERT_TRUE(idx[k] >= 0 && idx[k] < 3);
        ++used[static_cast<size_t>(idx[k])];
        // Seed identity: teacher k is family member idx[k], drawn from (family seed, idx[k]).
        EXPECT_TRUE(same_deltas(teachers[k], family.member(idx[k]))) << step << " " << micro;
      }
      EXPECT_EQ(osd_teacher_members(osd, ctx), idx) << "a function of (seed, step, micro)";
    }
  for (int u : used) EXPECT_GT(u, 0) << "every member teaches";

  osd.teachers = "posterior";  // fresh draws: never one of the family's members
  const auto fresh = OsdTeachers(*target, osd).for_step(StepContext{5, 0, 0});
  ASSERT_EQ(fresh.size(), 2u);
  for (const auto& t : fresh)
    for (int64_t m = 0; m < 3; ++m) EXPECT_FALSE(same_deltas(t, family.member(m)));

  osd.teachers = "family";
  osd.n_teachers = 4;
  EXPECT_THROW(osd.validate("osd"), Error);
}

TEST(Noise, RelativeSigmaIsTheNormRatioOfEveryModule) {
  auto target = tiny_model(6);
  NoiseConfig n = NoiseConfig::target_family(3);
  n.relative = true;
  n.sigma = 0.2;
  n.rank = 4;
  const NoiseSampler sampler(*target, n);
  double sum = 0;
  int count = 0;
  for (int64_t m = 0; m < 8; ++m)
    for (const auto& [name, term] : sampler.member(m)) {
      const auto& w = target->linear(name).weight;
      // Entries of B·A are sums of r products of unit normals: E‖B·A‖²_F = out·in·r, so
      // E‖ΔW‖²_F = sigma²·rms(W)²·out·in = sigma²·‖W‖²_F.
      sum += (term.delta_weight().square().sum() / w.square().sum()).item<double>();
      ++count;
    }
  EXPECT_NEAR(sum / count, 0.2 * 0.2, 0.15 * 0.04) << count << " modules";
}

// ---------------------------------------------------------------- the paper's hyper-parameters

// Every default against the paper's Tables 7-10 (values typed from the tables, B.1-B.4).
void expect_lora(const LoraConfig& l, std::vector<std::string> modules, const char* table) {
  EXPECT_EQ(l.r, 16) << table;
  EXPECT_DOUBLE_EQ(l.alpha, 32.0) << table;
  EXPECT_DOUBLE_EQ(l.dropout, 0.1) << table;
  EXPECT_EQ(l.target_modules, modules) << table;
}
void expect_train(const TrainConfig& t, double lr, int64_t batch, int64_t accum, double epochs,
                  double wd, const char* table) {
  EXPECT_DOUBLE_EQ(t.lr, lr) << table;
  EXPECT_EQ(t.batch_size, batch) << table;
  EXPECT_EQ(t.grad_accum, accum) << table;
  EXPECT_DOUBLE_EQ(t.epochs, epochs) << table;
  EXPECT_DOUBLE_EQ(t.weight_decay, wd) << table;
}

TEST(Defaults, EqualThePapersTables7To10) {
  const std::vector<std::string> qv{"q_proj", "v_proj"};
  const std::vector<std::string> seven{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                       "gate_proj", "up_proj", "down_proj"};
  // Table 7: p_mix.
  const OsdConfig osd;
  expect_lora(osd.lora, qv, "Table 7");
  expect_train(OsdConfig::default_train(), 3e-4, 8, 8, 12, 0.01, "Table 7");
  EXPECT_DOUBLE_EQ(OsdConfig::default_train().schedule.warmup_ratio, 0.1);
  EXPECT_EQ(osd.n_teachers, 2);
  EXPECT_DOUBLE_EQ(osd.teacher_noise.sigma, 0.1);  // B.1: N(0, 0.1), as the target family
  // Table 8: IDD, DDD, FDD.
  const DraftFamilyConfig fam;
  expect_lora(fam.lora, seven, "Table 8");
  expect_train(DraftFamilyConfig::default_train(), 7e-5, 8, 2, 1, 0.0, "Table 8");
  EXPECT_EQ(DraftFamilyConfig::default_train().schedule.warmup_steps, 150);
  EXPECT_DOUBLE_EQ(fam.init_noise.sigma, 0.5);  // B.2: N(0, 0.5)
  // Table 9: GKD.
  const GkdConfig gkd;
  expect_lora(gkd.lora, seven, "Table 9");
  expect_train(GkdConfig::default_train(), 7e-5, 8, 2, 1, 0.0, "Table 9");
  EXPECT_EQ(GkdConfig::default_train().schedule.warmup_steps, 150);
  EXPECT_EQ(GkdConfig::default_train().schedule.kind, "cosine");
  EXPECT_EQ(gkd.on_policy.max_new_tokens, 400);
  EXPECT_DOUBLE_EQ(gkd.on_policy.sampling.temperature, 1.0);
  EXPECT_DOUBLE_EQ(gkd.on_policy.sampling.top_p, 1.0);
  EXPECT_DOUBLE_EQ(gkd.lambda, 0.5);
  EXPECT_DOUBLE_EQ(gkd.beta, 0.5);
  // Table 10: MiniLLM.
  const MiniLLMConfig mini;
  expect_lora(mini.lora, seven, "Table 10");
  expect_train(MiniLLMConfig::default_train(), 7e-5, 8, 2, 1, 0.0, "Table 10");
  EXPECT_EQ(MiniLLMConfig::default_train().schedule.warmup_steps, 150);
  EXPECT_EQ(MiniLLMConfig::default_train().schedule.kind, "cosine");
  EXPECT_EQ(mini.on_policy.generations, 4);
  EXPECT_EQ(mini.on_policy.max_new_tokens, 400);
  EXPECT_DOUBLE_EQ(mini.on_policy.sampling.temperature, 1.0);
  EXPECT_DOUBLE_EQ(mini.on_policy.sampling.top_p, 1.0);
}

// ---------------------------------------------------------------- training loop

TEST(Trainer, ResumeFromCheckpointIsBitIdentical) {
  auto data = synthetic_samples(6, 2, 21);
  TrainConfig tc;
  tc.batch_size = 3, tc.grad_accum = 2, tc.max_steps = 5, tc.lr = 1e-2, tc.save_every = 2;
  tc.schedule.kind = "cosine", tc.schedule.warmup_steps = 1, tc.seed = 9, tc.progress = false;
  OsdConfig osd;
  osd.lora.r = 4;
  osd.teacher_noise.rank = 4;
  auto dir = test::scratch_dir("distill_resume");
  OsdObjective straight(tiny_model(1), osd, 3);
  auto a = train(straight, data, tc, dir / "a");
  ASSERT_TRUE(a.finished);
  auto want = adapter_tensors(straight.adapter());

  auto stopping = tc;
  stopping.stop_after = 3;  // "killed" after step 3 (a checkpoint is at 3; the next would be 4)
  {
    OsdObjective first(tiny_model(1), osd, 3);
    auto r = train(first, data, stopping, dir / "b");
    EXPECT_FALSE(r.finished);
    EXPECT_EQ(r.steps_done, 3);
  }
  {  // a checkpoint whose optimizer.pt libtorch wrote (before the optimizer had its own format)
    OsdObjective old(tiny_model(1), osd, 3);
    auto params = old.adapter().parameters();
    torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(tc.lr));
    ASSERT_TRUE(load_latest_checkpoint(dir / "b", old.adapter(), optimizer).has_value());
    const fs::path ck = dir / "b/checkpoints/step-00000003";
    torch::save(optimizer, (ck / "optimizer.pt").string());
    auto state = read_json_file(ck / "trainer_state.json");
    state["sha256"]["optimizer.pt"] = sha256_file(ck / "optimizer.pt");
    write_file_atomic(ck / "trainer_state.json", state.dump(2) + "\n");
  }
  OsdObjective resumed(tiny_model(1), osd, 3);  // a new process: fresh model and adapter
  auto b = train(resumed, data, tc, dir / "b");
  ASSERT_TRUE(b.finished);
  auto got = adapter_tensors(resumed.adapter());
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(torch::equal(got[i], want[i])) << i;
  EXPECT_EQ(read_lines(dir / "a/metrics.jsonl").size(), read_lines(dir / "b/metrics.jsonl").size());
  // The optimizer's state is written as a function of the state alone (libtorch keys it by
  // tensor addresses): the last checkpoints of the two runs are byte-identical.
  for (const char* f : {"optimizer.pt", "params.pt", "trainer_state.json"})
    EXPECT_TRUE(read_bytes(dir / "a/checkpoints/step-00000005" / f) ==
                read_bytes(dir / "b/checkpoints/step-00000005" / f))
        << f;
  auto manifest = read_json_file(dir / "a/manifest.json");
  EXPECT_EQ(manifest["method"], "osd");
  EXPECT_TRUE(fs::exists(dir / "a/adapter/adapter_model.safetensors"));
}

// FIPS 180-2 vectors, and a file against coreutils' sha256sum.
TEST(Manifest, Sha256MatchesKnownVectorsAndSha256sum) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const auto dir = test::scratch_dir("sha256");
  std::string bytes;
  for (int i = 0; i < 200000; ++i) bytes += static_cast<char>((i * 7919 + i / 13) & 0xff);
  std::ofstream(dir / "data.bin", std::ios::binary) << bytes;
  auto ref = test::run_command("sha256sum " + (dir / "data.bin").string());
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  EXPECT_EQ(sha256_file(dir / "data.bin"), ref.out.substr(0, 64));
}

// The manifest names drafteu's own commit, not that of the directory the program runs in.
TEST(Manifest, RecordsDrafteuCommitNotTheWorkingDirectorys) {
  const auto dir = test::scratch_dir("manifest_commit");
  const std::string git = "git -C " + dir.string() + " -c user.name=t -c user.email=t@t ";
  ASSERT_EQ(test::run_command(git + "init -q && " + git + "commit -q --allow-empty -m x").exit_code,
            0);
  const auto other = test::run_command("git -C " + dir.string() + " rev-parse HEAD").out;
  const auto cwd = fs::current_path();
  fs::current_path(dir);
  write_manifest(dir / "run", {{"method", "test"}});
  fs::current_path(cwd);
  const auto m = read_json_file(dir / "run/manifest.json");
  EXPECT_EQ(m["git_commit"], std::string(build_commit()));
  EXPECT_NE(m["git_commit"].get<std::string>() + "\n", other);
  const std::string commit = build_commit();  // 40 hex digits, or "" outside a git checkout
  EXPECT_TRUE(commit.empty() || commit.size() == 40) << commit;
  EXPECT_EQ(commit.find_first_not_of("0123456789abcdef"), std::string::npos) << commit;
  const char* tests_dir = std::getenv("DRAFTEU_TESTS_DIR");
  if (tests_dir && fs::exists(fs::path(tests_dir) / "../.git")) {
    EXPECT_EQ(commit.size(), 40u);
  }
}

TEST(Trainer, Bf16AutocastMatchesF32ToBf16PrecisionAndKeepsF32State) {
  auto data = synthetic_samples(8, 2, 5);
  // One loss on the same batch, f32 and under bf16 autocast: close, but not equal (bf16 is used).
  Teacher teacher{tiny_model(3), {}};
  auto lora = DraftFamilyConfig::default_lora();
  lora.dropout = 0.0;  // the two losses must differ by precision alone
  DraftObjective obj(tiny_model(4), teacher, lora, {}, 1);
  std::vector<const Sample*> rows;
  for (const auto& s : data) rows.push_back(&s);
  auto batch = make_batch(rows, 64);
  StepContext ctx{1, 0, 0};
  double f32 = 0, bf16 = 0;
  {
    torch::NoGradGuard ng;
    f32 = obj.loss(batch, ctx).loss.item<double>();
    Autocast autocast(ComputeDtype::BF16);
    auto logits = loss_position_logits(*tiny_model(4), batch);
    EXPECT_EQ(logits.scalar_type(), torch::kFloat);  // logits come back in f32
    bf16 = obj.loss(batch, ctx).loss.item<double>();
  }
  EXPECT_NE(f32, bf16);
  EXPECT_NEAR(bf16, f32, 0.03 * f32 + 1e-3);
  EXPECT_FALSE(at::autocast::is_cpu_enabled());  // the scope restored the previous state

  // Training in bf16 lowers the loss like f32 and keeps adapter and optimizer state in f32.
  TrainConfig tc;
  tc.batch_size = 4, tc.max_steps = 12, tc.lr = 1e-2, tc.progress = false, tc.seed = 3;
  auto dir = test::scratch_dir("distill_bf16");
  std::map<std::string, TrainResult> results;
  for (const std::string dtype : {"f32", "bf16"}) {
    tc.dtype = dtype;
    DraftObjective o(tiny_model(4), teacher, lora, {}, 1);
    results[dtype] = train(o, data, tc, dir / dtype);
    for (auto& p : o.adapter().parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat) << dtype;
    const auto first = json::parse(read_lines(dir / dtype / "metrics.jsonl").front());
    EXPECT_LT(results[dtype].last_loss, 0.95 * first["loss"].get<double>()) << dtype;
  }
  EXPECT_NEAR(results["bf16"].last_loss, results["f32"].last_loss, 0.02 * results["f32"].last_loss);
  tc.dtype = "f16";
  EXPECT_THROW(tc.validate("cfg"), Error);
}

TEST(Trainer, SigkillOfTheCliResumesToTheSameWeights) {
  auto dir = test::scratch_dir("distill_sigkill");
  {
    std::ofstream f(dir / "data.jsonl");
    for (const auto& s : synthetic_samples(8, 2, 5)) f << sample_to_json(s).dump() << "\n";
  }
  const std::string base =
      test::drafteu_bin() + " --threads 1 train-proxy --quiet --target preset:tiny:3 --data " +
      (dir / "data.jsonl").string() +
      " --set lora.r=4 --set teacher_noise.rank=4 --set train.batch_size=2"
      " --set train.grad_accum=1 --max-steps 120 --save-every 3 --seed 4 --out ";
  auto r = test::run_command(base + (dir / "straight").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Run again and SIGKILL it once it has written some steps; then rerun to completion.
  pid_t pid = fork();
  if (pid > 0) setpgid(pid, pid);
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", (base + (dir / "killed").string() + " >/dev/null 2>&1").c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto metrics = dir / "killed/metrics.jsonl";
  for (int i = 0; i < 2000 && (!fs::exists(metrics) || read_lines(metrics).size() < 20); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(-pid, SIGKILL);  // the child leads its own process group: sh and drafteu
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_LT(read_lines(metrics).size(), 120u) << "the run finished before it was killed";
  r = test::run_command(base + (dir / "killed").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto a = read_lines(dir / "straight/adapter/adapter_model.safetensors");
  auto b = read_lines(dir / "killed/adapter/adapter_model.safetensors");
  EXPECT_TRUE(a == b) << "adapter files differ after SIGKILL + resume";
}

namespace {

// ---------------------------------------------------------------- crash safety of the CLI jobs

// `command` through /bin/sh in its own process group (a SIGKILL of the group reaches sh and
// drafteu). fsize_limit >= 0: RLIMIT_FSIZE in the child with SIGXFSZ ignored, so a write past
// that many bytes fails with EFBIG, as on a full disk, without root. output_fd: when given, the
// child's stdout and stderr go to a pipe whose read end is returned there (a pipe, not a file:
// the limit would cut the error message short).
pid_t spawn_job(const std::string& command, long fsize_limit = -1, int* output_fd = nullptr) {
  int fds[2] = {-1, -1};
  if (output_fd && pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid > 0) setpgid(pid, pid);
  if (pid == 0) {
    setpgid(0, 0);
    if (output_fd) {
      dup2(fds[1], 1), dup2(fds[1], 2);
      close(fds[0]), close(fds[1]);
    }
    if (fsize_limit >= 0) {
      const rlimit r{static_cast<rlim_t>(fsize_limit), static_cast<rlim_t>(fsize_limit)};
      setrlimit(RLIMIT_FSIZE, &r);
      signal(SIGXFSZ, SIG_IGN);
    }
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  if (output_fd) {
    close(fds[1]);
    *output_fd = fds[0];
  }
  return pid;
}

// Runs `command` with writes limited to `limit` bytes per file; returns the wait status and the
// output (stdout and stderr).
int run_with_file_limit(const std::string& command, long limit, std::string* output) {
  int fd = -1;
  const pid_t pid = spawn_job(command, limit, &fd);
  output->clear();
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) output->append(buf, static_cast<size_t>(n));
  close(fd);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

int64_t count_lines(const fs::path& p) {
  return fs::exists(p) ? static_cast<int64_t>(read_lines(p).size()) : 0;
}

// Lines of all files named `name` under `dir` (e.g. every draft job's metrics.jsonl).
// The job under watch creates and renames checkpoint directories meanwhile: an entry that
// vanishes mid-walk ends this count early (the caller polls again), it does not throw.
int64_t count_lines_under(const fs::path& dir, const std::string& name) {
  int64_t n = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename() == name) n += count_lines(it->path());
  return n;
}

// Kills `command(out)` at `kills` seeded random moments and resumes it each time, then runs it to
// the end. A moment is when progress(out) first reaches a random level in [lo, hi) (levels rise
// from kill to kill), plus 0-20 ms, so kills land inside steps and checkpoint writes alike.
void kill_and_resume(const std::function<std::string(const fs::path&)>& command,
                     const fs::path& out, const std::function<int64_t()>& progress, int64_t lo,
                     int64_t hi, uint64_t seed, int kills = 3) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> levels;
  for (int i = 0; i < kills; ++i) levels.push_back(lo + static_cast<int64_t>(rng() % (hi - lo)));
  std::sort(levels.begin(), levels.end());
  for (int64_t level : levels) {
    const pid_t pid = spawn_job(command(out) + " >/dev/null 2>&1");
    int status = 0;
    bool exited = false;
    for (int i = 0; i < 24000 && progress() < level; ++i) {  // at most 120 s
      if (waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!exited) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the run at level " << level << " ended before it was killed (status " << status << ")";
  }
  const auto r = test::run_command(command(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

// The bytes of `rel` under `a` and `b` are equal (and the file exists).
void expect_same_file(const fs::path& a, const fs::path& b, const std::string& rel) {
  ASSERT_TRUE(fs::exists(a / rel)) << (a / rel);
  ASSERT_TRUE(fs::exists(b / rel)) << (b / rel);
  EXPECT_TRUE(read_bytes(a / rel) == read_bytes(b / rel)) << rel << " differs after kills";
}

// metrics.jsonl without the wall-clock field: every step's loss, lr, norm and tokens must match.
std::vector<json> metrics_without_time(const fs::path& file) {
  std::vector<json> out;
  for (const auto& l : read_lines(file)) {
    auto j = json::parse(l);
    j.erase("elapsed_s");
    out.push_back(j);
  }
  return out;
}

void write_synthetic_data(const fs::path& file, int64_t prompts, int64_t per, uint64_t seed) {
  std::ofstream f(file);
  for (const auto& s : synthetic_samples(prompts, per, seed)) f << sample_to_json(s).dump() << "\n";
}

}  // namespace

TEST(CrashSafety, TrainDraftsResumesByteIdenticalAfterThreeKills) {
  const auto dir = test::scratch_dir("crash_train_drafts");
  write_synthetic_data(dir / "data.jsonl", 8, 2, 7);
  auto command = [&](const fs::path& out) {
    return test::drafteu_bin() +
           " --threads 1 train-drafts --quiet --target preset:tiny:3 --data " +
           (dir / "data.jsonl").string() +
           " --strategy ddd --splits 1 --per-split 2 --set lora.r=2 --set teacher_noise.rank=2"
           " --set train.batch_size=2 --max-steps 40 --save-every 3 --seed 5 --out " +
           out.string();
  };
  auto r = test::run_command(command(dir / "straight"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const fs::path killed = dir / "killed";
  kill_and_resume(
      command, killed, [&] { return count_lines_under(killed, "metrics.jsonl"); }, 2, 70, 1401);
  for (const char* job : {"draft-s0-m0", "draft-s0-m1"}) {
    const fs::path a = dir / "straight" / job, b = killed / job;
    expect_same_file(a, b, "adapter/adapter_model.safetensors");
    expect_same_file(a, b, "adapter/adapter_config.json");
    EXPECT_EQ(metrics_without_time(a / "metrics.jsonl"), metrics_without_time(b / "metrics.jsonl"))
        << job;
  }
}

TEST(CrashSafety, TrainBaselinesResumeByteIdenticalAfterThreeKills) {
  for (const std::string method : {"gkd", "minillm"}) {
    SCOPED_TRACE(method);
    const auto dir = test::scratch_dir("crash_train_baseline_" + method);
    write_synthetic_data(dir / "data.jsonl", 6, 1, 8);
    const std::string extra = method == "gkd"
                                  ? " --set gkd.max_new_tokens=4 --set gkd.lambda=0.5"
                                  : " --set minillm.max_new_tokens=4 --set minillm.generations=2";
    auto command = [&](const fs::path& out) {
      return test::drafteu_bin() + " --threads 1 train-baseline --quiet --method " + method +
             " --target preset:tiny:3 --set draft=preset:tiny:4 --data " +
             (dir / "data.jsonl").string() + " --set lora.r=2" + extra +
             " --set train.batch_size=2 --max-steps 30 --save-every 2 --seed 6 --out " +
             out.string();
    };
    auto r = test::run_command(command(dir / "straight"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const fs::path killed = dir / "killed";
    kill_and_resume(
        command, killed, [&] { return count_lines(killed / "metrics.jsonl"); }, 2, 24, 1402);
    expect_same_file(dir / "straight", killed, "adapter/adapter_model.safetensors");
    EXPECT_EQ(metrics_without_time(dir / "straight/metrics.jsonl"),
              metrics_without_time(killed / "metrics.jsonl"));
  }
}

TEST(CrashSafety, GenDataResumesByteIdenticalAfterThreeKills) {
  const auto dir = test::scratch_dir("crash_gen_data");
  auto command = [&](const fs::path& out) {
    return test::drafteu_bin() + " --threads 1 gen-data --quiet --target " +
           test::stories260k_gguf().string() + " --prompts " +
           (test::shared_dir() / "data/gsm8k/test.jsonl").string() +
           " --set max_prompts=6 --members -1 0 --responses 3 --set max_new_tokens=24"
           " --set batch_size=2 --set seed=3 --out " +
           out.string();
  };
  auto r = test::run_command(command(dir / "straight"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(count_lines(dir / "straight/samples.jsonl"), 36);
  const fs::path killed = dir / "killed";
  kill_and_resume(
      command, killed, [&] { return count_lines(killed / "samples.jsonl"); }, 1, 28, 1403);
  expect_same_file(dir / "straight", killed, "samples.jsonl");
}

// A full disk (writes past RLIMIT_FSIZE fail with EFBIG) during train-proxy's checkpointing and
// gen-data's output: a clear error naming the file, a plain non-zero exit (not SIGABRT), no partial
// file in place, and the previous checkpoint still resumes to the uninterrupted run's adapter.
TEST(CrashSafety, FullDiskFailsCleanlyAndKeepsThePreviousCheckpoint) {
  const auto dir = test::scratch_dir("crash_full_disk");
  write_synthetic_data(dir / "data.jsonl", 8, 2, 5);
  auto command = [&](const fs::path& out) {
    return test::drafteu_bin() + " --threads 1 train-proxy --quiet --target preset:tiny:3 --data " +
           (dir / "data.jsonl").string() +
           " --set lora.r=4 --set teacher_noise.rank=4 --set train.batch_size=2"
           " --max-steps 12 --save-every 3 --seed 4 --out " +
           out.string();
  };
  auto r = test::run_command(command(dir / "straight"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const fs::path out = dir / "run";
  // The first checkpoint with room to spare; stop there.
  r = test::run_command(command(out) + " --stop-after 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto optimizer_size = fs::file_size(out / "checkpoints/step-00000003/optimizer.pt");
  // Files may now grow to just below the checkpoint's largest file: the resumed run trains steps
  // 4-6, then cannot write the step-6 checkpoint.
  std::string err;
  int status = run_with_file_limit(command(out), static_cast<long>(optimizer_size) - 1, &err);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status) << ": " << err;
  EXPECT_NE(WEXITSTATUS(status), 0) << err;
  EXPECT_NE(err.find("optimizer.pt"), std::string::npos) << err;
  EXPECT_NE(err.find("File too large"), std::string::npos) << err;
  EXPECT_EQ(read_bytes(out / "checkpoints/latest"), "step-00000003\n");
  for (const auto& e : fs::recursive_directory_iterator(out)) {
    const std::string name = e.path().filename().string();
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << "left behind: " << e.path();
  }
  EXPECT_FALSE(fs::exists(out / "adapter")) << "no final adapter from a failed run";
  // With room again, the run resumes from step 3 to the uninterrupted run's adapter.
  r = test::run_command(command(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_file(dir / "straight", out, "adapter/adapter_model.safetensors");
  EXPECT_EQ(metrics_without_time(dir / "straight/metrics.jsonl"),
            metrics_without_time(out / "metrics.jsonl"));

  // No room at all (a full or read-only output directory): the error comes before any training.
  status = run_with_file_limit(command(dir / "full"), 0, &err);
  ASSERT_TRUE(WIFEXITED(status)) << err;
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_NE(err.find((dir / "full").string()), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir / "full/metrics.jsonl"));
  EXPECT_FALSE(fs::exists(dir / "full/checkpoints"));
  if (geteuid() !=
      0) {  // a read-only directory (root writes through chmod; RLIMIT_FSIZE stands in)
    fs::create_directories(dir / "ro");
    fs::permissions(dir / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    r = test::run_command(command(dir / "ro"));
    fs::permissions(dir / "ro", fs::perms::owner_all);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find((dir / "ro").string()), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir / "ro/metrics.jsonl"));
  }

  // gen-data: the output stops at the last whole line that fits, with an error naming it.
  const std::string gen = test::drafteu_bin() + " --threads 1 gen-data --quiet --target " +
                          test::stories260k_gguf().string() + " --prompts " +
                          (test::shared_dir() / "data/gsm8k/test.jsonl").string() +
                          " --set max_prompts=2 --responses 3 --set max_new_tokens=16 --out " +
                          (dir / "gen").string();
  r = test::run_command(gen);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string full = read_bytes(dir / "gen/samples.jsonl");
  fs::remove_all(dir / "gen");
  status = run_with_file_limit(gen, static_cast<long>(full.size() / 2), &err);
  ASSERT_TRUE(WIFEXITED(status)) << err;
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_NE(err.find("samples.jsonl: write failed"), std::string::npos) << err;
  const std::string part = read_bytes(dir / "gen/samples.jsonl");
  ASSERT_FALSE(part.empty());
  EXPECT_EQ(part.back(), '\n') << "a partial line was left in place";
  EXPECT_EQ(full.compare(0, part.size(), part), 0) << "the lines written differ";
  r = test::run_command(gen);  // room again: it completes to the same file
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(read_bytes(dir / "gen/samples.jsonl") == full);
}

// A loss that turns non-finite at a given step: the loop must stop with an error, not save NaN.
class PoisonedObjective : public Objective {
 public:
  PoisonedObjective(LlamaForCausalLM model, int64_t poison_step)
      : model_(std::move(model)), lora_(*model_, LoraConfig{}), poison_step_(poison_step) {}
  std::string name() const override { return "poisoned"; }
  LoraAdapterImpl& adapter() override { return *lora_; }
  MicroLoss loss(const Batch&, const StepContext& ctx) override {
    auto l = lora_->parameters()[0].pow(2).sum();
    if (ctx.step == poison_step_) l = l * std::numeric_limits<double>::quiet_NaN();
    return {l, 1, {}};
  }
  json describe() const override { return json::object(); }

 private:
  LlamaForCausalLM model_;
  LoraAdapter lora_;
  int64_t poison_step_;
};

// Checkpoints are validated on resume (issue 14): checksums, the step, where `latest` points.
TEST(Trainer, CorruptCheckpointsAreNamedNotLoaded) {
  auto data = synthetic_samples(4, 1, 3);
  TrainConfig tc;
  tc.batch_size = 2, tc.max_steps = 4, tc.lr = 1e-2, tc.save_every = 2, tc.seed = 2;
  tc.progress = false;
  OsdConfig osd;
  osd.lora.r = 2;
  osd.teacher_noise.rank = 2;
  const fs::path out = test::scratch_dir("distill_corrupt") / "run";
  auto stopping = tc;
  stopping.stop_after = 2;
  {
    OsdObjective o(tiny_model(1), osd, 3);
    train(o, data, stopping, out);
  }
  const fs::path ck = out / "checkpoints/step-00000002";
  ASSERT_TRUE(fs::exists(ck / "trainer_state.json"));
  const std::string state = read_bytes(ck / "trainer_state.json");
  auto resume_error = [&] {
    OsdObjective o(tiny_model(1), osd, 3);
    return test::error_of([&] { train(o, data, tc, out); });
  };
  auto expect_named = [&](const std::string& what, const std::string& file,
                          const std::string& reason) {
    const std::string err = resume_error();
    EXPECT_NE(err.find(file), std::string::npos) << what << ": " << err;
    EXPECT_NE(err.find(reason), std::string::npos) << what << ": " << err;
  };
  // A negative step once gave a negative range and SIGSEGV.
  json st = json::parse(state);
  st["step"] = -5;
  std::ofstream(ck / "trainer_state.json") << st.dump();
  expect_named("step -5", "trainer_state.json", "'step'");
  st["step"] = 1e6;
  std::ofstream(ck / "trainer_state.json") << st.dump();
  expect_named("step 1e6", "trainer_state.json", "'step'");
  std::ofstream(ck / "trainer_state.json") << "{\"step\": 2, ";
  expect_named("torn state", "trainer_state.json", "not valid JSON");
  std::ofstream(ck / "trainer_state.json") << state;
  // One flipped bit inside params.pt loaded silently before.
  const std::string params = read_bytes(ck / "params.pt");
  std::string flipped = params;
  flipped[flipped.size() / 2] ^= 0x10;
  std::ofstream(ck / "params.pt", std::ios::binary) << flipped;
  expect_named("bit flip", "params.pt", "checksum");
  std::ofstream(ck / "params.pt", std::ios::binary) << params.substr(0, params.size() / 2);
  expect_named("truncated", "params.pt", "checksum");
  std::ofstream(ck / "params.pt", std::ios::binary) << params;
  // `latest` may only name a checkpoint beside it.
  for (const std::string target : {"/etc", "../../run", "step-00000002/../../x"}) {
    std::ofstream(out / "checkpoints/latest") << target << "\n";
    expect_named(target, "latest", "expected a checkpoint name");
  }
  std::ofstream(out / "checkpoints/latest") << "step-00000002\n";
  // A checkpoint past the end of a shorter run.
  auto shorter = tc;
  shorter.max_steps = 1;
  {
    OsdObjective o(tiny_model(1), osd, 3);
    const std::string err = test::error_of([&] { train(o, data, shorter, out); });
    EXPECT_NE(err.find("step 2"), std::string::npos) << err;
  }
  // Intact again: the resume completes.
  OsdObjective o(tiny_model(1), osd, 3);
  EXPECT_TRUE(train(o, data, tc, out).finished);
}

TEST(Trainer, UnwritableOutputAndNonFiniteLossFailAtOnce) {
  auto data = synthetic_samples(4, 1, 3);
  TrainConfig tc;
  tc.batch_size = 2, tc.max_steps = 6, tc.lr = 1e-2, tc.seed = 2, tc.progress = false;
  const fs::path dir = test::scratch_dir("distill_unwritable");
  // A path under a regular file can never be created (chmod does not stop root).
  std::ofstream(dir / "file") << "x";
  {
    PoisonedObjective o(tiny_model(1), -1);
    const std::string err = test::error_of([&] { train(o, data, tc, dir / "file" / "out"); });
    EXPECT_NE(err.find((dir / "file" / "out").string()), std::string::npos) << err;
  }
  // The metrics file cannot be opened (a directory sits at its path): an error before step 1.
  fs::create_directories(dir / "run1" / "metrics.jsonl");
  {
    PoisonedObjective o(tiny_model(1), -1);
    const std::string err = test::error_of([&] { train(o, data, tc, dir / "run1"); });
    EXPECT_NE(err.find("metrics.jsonl"), std::string::npos) << err;
    EXPECT_FALSE(fs::exists(dir / "run1" / "checkpoints"));
  }
  // A NaN loss at step 3 stops the run; the last checkpoint is never written with NaN.
  tc.save_every = 1;
  PoisonedObjective o(tiny_model(1), 2);
  const std::string err = test::error_of([&] { train(o, data, tc, dir / "run2"); });
  EXPECT_NE(err.find("not finite"), std::string::npos) << err;
  EXPECT_NE(err.find("step 3"), std::string::npos) << err;
  EXPECT_EQ(read_bytes(dir / "run2/checkpoints/latest"), "step-00000002\n");
  EXPECT_FALSE(fs::exists(dir / "run2/adapter"));
}

// ---------------------------------------------------------------- draft families

TEST(Drafts, DddDraftsSeeOnlyTheirPartitionAndGatherIntoAFamily) {
  auto data = synthetic_samples(10, 2, 31);
  DraftFamilyConfig fam;
  fam.strategy = DraftStrategy::DDD;
  fam.splits = 2, fam.per_split = 2, fam.partition_seed = 5;
  fam.lora.r = 2;
  fam.teacher_noise.rank = 4;
  TrainConfig tc;
  tc.batch_size = 4, tc.max_steps = 2, tc.lr = 1e-3, tc.progress = false;
  auto dir = test::scratch_dir("distill_ddd");
  auto target = tiny_model(1);
  auto jobs = plan_draft_family(fam);
  ASSERT_EQ(jobs.size(), 4u);
  std::set<int64_t> covered;
  for (const auto& job : jobs) {
    auto r = train_draft_job(tiny_model(2), target, data, fam, job, tc, dir);
    auto part = prompt_partition({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 2, job.split, 5);
    for (auto p : r.prompts_seen)
      EXPECT_TRUE(std::binary_search(part.begin(), part.end(), p)) << job.name() << " saw " << p;
    covered.insert(r.prompts_seen.begin(), r.prompts_seen.end());
    auto manifest = read_json_file(dir / job.name() / "manifest.json");
    EXPECT_EQ(manifest["prompts_seen"].get<std::vector<int64_t>>(), r.prompts_seen);
  }
  EXPECT_EQ(covered.size(), 10u);
  auto family = load_draft_family(dir, tiny_model(2));
  EXPECT_EQ(family.size(), 4);
  auto ids = torch::tensor({1, 5, 9, 13}, torch::kInt64).unsqueeze(0);
  torch::NoGradGuard no_grad;
  auto logits = family.forward(ids);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{4, 1, 4, 512}));
  // Member 1 of the family equals draft-s0-m1 applied by hand.
  auto draft = tiny_model(2);
  auto lora = load_peft_adapter(dir / "draft-s0-m1/adapter", *draft);
  lora->attach(*draft);
  EXPECT_LT((draft->forward(ids) - logits[1]).abs().max().item<double>(), 1e-4);
  EXPECT_EQ(find_draft_job(jobs, 1, 0).index, 2);
  EXPECT_THROW(find_draft_job(jobs, 2, 0), Error);
}

TEST(Drafts, IddAndFddStartFromTheirOwnNoiseAndKOnlyFamily) {
  DraftFamilyConfig fam;
  fam.strategy = DraftStrategy::IDD;
  fam.splits = 1, fam.per_split = 3;
  auto jobs = plan_draft_family(fam);
  auto model = tiny_model(2);
  for (const auto& j : jobs) {
    EXPECT_FALSE(j.partitioned);
    EXPECT_TRUE(j.init_noise);
  }
  auto d0 = draft_init_deltas(*model, fam, jobs[0]), d1 = draft_init_deltas(*model, fam, jobs[1]);
  EXPECT_FALSE(torch::equal(d0.begin()->second.a, d1.begin()->second.a));
  fam.strategy = DraftStrategy::FDD;
  for (const auto& j : plan_draft_family(fam)) {
    EXPECT_TRUE(j.partitioned);
    EXPECT_TRUE(j.init_noise);
  }
  // K only: one draft + K noise draws; untrained: K noise draws alone.
  auto untrained = noisy_draft_family(model, {}, 3, NoiseConfig::target_family(4));
  EXPECT_EQ(untrained.size(), 3);
  LoraConfig lc;
  lc.r = 2;
  LoraAdapter lora(*model, lc);
  for (auto& [n, l] : lora->layers()) l->lora_B.data().normal_(0, 0.1);
  auto k_only = noisy_draft_family(model, lora->to_member(), 3, NoiseConfig::target_family(4));
  torch::NoGradGuard no_grad;
  auto ids = torch::tensor({1, 7, 8}, torch::kInt64).unsqueeze(0);
  auto noise = NoiseSampler(*model, NoiseConfig::target_family(4)).member(2);
  lora->attach(*model);
  auto attached = attach_member(*model, noise);
  auto want = model->forward(ids);
  attached.detach();
  lora->detach();
  EXPECT_LT((k_only.forward(ids)[2] - want).abs().max().item<double>(), 1e-4);
}

TEST(Drafts, InitNoiseInTheAdapterStartsAsTheNoiseAndIsCountedOnce) {
  auto data = synthetic_samples(6, 2, 33);
  DraftFamilyConfig fam;
  fam.strategy = DraftStrategy::IDD;
  fam.splits = 1, fam.per_split = 2;
  fam.init_noise.relative = true;
  fam.init_noise.sigma = 0.3;
  fam.init_noise.target_modules = {"q_proj", "v_proj", "down_proj"};
  fam.lora.target_modules = {"q_proj", "v_proj"};  // down_proj's noise stays a fixed delta
  fam.lora.dropout = 0.0;
  fam.init_noise_at = "frozen";  // for `want` below
  TrainConfig tc;
  tc.batch_size = 4, tc.max_steps = 1, tc.lr = 1e-12, tc.progress = false;
  auto ids = torch::tensor({1, 5, 9, 13, 2}, torch::kInt64).unsqueeze(0);
  torch::Tensor want;  // draft-s0-m1 = its base + its initial noise, by hand
  {
    auto base = tiny_model(2);
    auto noise = draft_init_deltas(*base, fam, plan_draft_family(fam)[1]);
    ASSERT_EQ(noise.size(), 3u * static_cast<size_t>(base->config().num_hidden_layers));
    torch::NoGradGuard no_grad;
    auto attached = attach_member(*base, noise);
    want = base->forward(ids);
    // Far from the base: the check below could not pass with the noise dropped.
    ASSERT_GT((want - tiny_model(2)->forward(ids)).abs().max().item<double>(), 1e-2);
  }
  torch::Tensor plain;  // the base alone
  {
    torch::NoGradGuard no_grad;
    plain = tiny_model(2)->forward(ids);
  }
  for (const std::string at : {"frozen", "adapter", "lora_a"}) {
    fam.init_noise_at = at;
    auto dir = test::scratch_dir("distill_init_" + at);
    auto target = tiny_model(1);
    for (const auto& job : plan_draft_family(fam))
      train_draft_job(tiny_model(2), target, data, fam, job, tc, dir);
    EXPECT_EQ(read_json_file(dir / "draft-s0-m1/draft.json").value("init_noise_at", "frozen"), at);
    auto family = load_draft_family(dir, tiny_model(2));
    torch::NoGradGuard no_grad;
    // "lora_a" starts lora_B at 0: the (untrained) draft is its base.
    EXPECT_LT((family.forward(ids)[1] - (at == "lora_a" ? plain : want)).abs().max().item<double>(),
              1e-4)
        << at;
    if (at == "lora_a") {
      auto lora = load_peft_adapter(dir / "draft-s0-m1/adapter", *tiny_model(2));
      for (const auto& [name, layer] : lora->layers()) {
        // lora_A ~ N(0, 0.3²) entry by entry (kaiming would give ~1/sqrt(in) = 0.125 here).
        const double sd = layer->lora_A.std().item<double>();
        EXPECT_GT(sd, 0.25) << name;
        EXPECT_LT(sd, 0.35) << name;
        EXPECT_LT(layer->lora_B.abs().max().item<double>(), 1e-6) << name;
      }
      continue;
    }
    if (at != "adapter") continue;
    // The saved adapter carries the noise: on its own it moves q/v as the noise does.
    auto draft = tiny_model(2);
    auto lora = load_peft_adapter(dir / "draft-s0-m1/adapter", *draft);
    auto noise = draft_init_deltas(*draft, fam, plan_draft_family(fam)[1]);
    for (const auto& [name, layer] : lora->layers()) {
      const auto d = layer->delta_weight(), n = noise.at(name).delta_weight();
      EXPECT_LT((d - n).abs().max().item<double>(), 1e-5 + 1e-4 * n.abs().max().item<double>())
          << name;
    }
  }
  // Noise of a higher rank than the LoRA cannot start it.
  fam.init_noise_at = "adapter";
  fam.lora.r = 2;
  auto base = tiny_model(2);
  auto job = plan_draft_family(fam)[0];
  try {
    DraftObjective o(base, Teacher{tiny_model(1), {}}, fam.lora, draft_init_deltas(*base, fam, job),
                     1, "d", "adapter");
    FAIL() << "rank 8 noise fit a rank 2 LoRA";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit the LoRA's rank 2"), std::string::npos)
        << e.what();
  }
  fam.init_noise_at = "sideways";
  EXPECT_THROW(plan_draft_family(fam), Error);
}

// ---------------------------------------------------------------- baselines (smoke)

TEST(Baselines, GkdAndMiniLLMTrainAndAreOnPolicyAsConfigured) {
  auto data = synthetic_samples(4, 1, 41);
  TrainConfig tc;
  tc.batch_size = 2, tc.max_steps = 2, tc.lr = 1e-3, tc.progress = false, tc.max_seq_len = 32;
  auto dir = test::scratch_dir("distill_baselines");
  GkdConfig g;
  g.lora.r = 2;
  g.on_policy.max_new_tokens = 6;
  g.lambda = 0.5;
  GkdObjective gkd(tiny_model(2), Teacher{tiny_model(1), {}}, g, 1);
  int on = 0;
  for (int64_t s = 0; s < 200; ++s) on += gkd.on_policy({7, s, 0});
  EXPECT_GT(on, 70);
  EXPECT_LT(on, 130);
  auto r1 = train(gkd, data, tc, dir / "gkd");
  EXPECT_TRUE(r1.finished);
  EXPECT_TRUE(std::isfinite(r1.last_loss));
  MiniLLMConfig m;
  m.lora.r = 2;
  m.on_policy.generations = 2, m.on_policy.max_new_tokens = 6;
  MiniLLMObjective mini(tiny_model(2), Teacher{tiny_model(1), {}}, m, 1);
  auto batch = mini.batch_for({&data[0], &data[1]}, 32, {0, 0, 0});
  EXPECT_EQ(batch.ids.size(0), 4);  // 2 prompts x 2 generations
  auto r2 = train(mini, data, tc, dir / "minillm");
  EXPECT_TRUE(r2.finished);
  EXPECT_TRUE(std::isfinite(r2.last_loss));
}

// ---------------------------------------------------------------- a real model

TEST(RealModel, DraftTrainingOnStories260kTextLowersHeldOutKL) {
  auto target = load_model(test::stories260k_gguf());
  auto draft = load_model(test::stories260k_gguf());
  // Text sampled from the real model (from BOS), split into train and held-out rows.
  std::vector<std::vector<int64_t>> prompts;
  std::vector<uint64_t> seeds;
  for (uint64_t i = 0; i < 48; ++i) prompts.push_back({1}), seeds.push_back(100 + i);
  BatchGenerateOptions o;
  o.max_new_tokens = 40;
  o.stop_ids = {2};
  auto texts = generate_batch(*target.model, prompts, seeds, o);
  std::vector<Sample> train_set, held_out;
  for (size_t i = 0; i < texts.size(); ++i) {
    Sample s;
    s.prompt_index = static_cast<int64_t>(i);
    s.prompt_ids = {1, texts[i][0]};
    s.response_ids.assign(texts[i].begin() + 1, texts[i].end());
    if (s.response_ids.empty()) continue;
    (i < 40 ? train_set : held_out).push_back(s);
  }
  // Teacher: a noisy member of the target family (σ 0.1); the draft starts from the target itself.
  auto noise = NoiseConfig::target_family(3);
  Teacher teacher{target.model, NoiseSampler(*target.model, noise).member(0)};
  std::vector<const Sample*> rows;
  for (const auto& s : held_out) rows.push_back(&s);
  auto held = make_batch(rows, 64);
  auto held_kl = [&](LoraAdapterImpl* lora) {
    torch::NoGradGuard no_grad;
    auto t = teacher_logits(teacher, held);
    if (lora) lora->eval(), lora->attach(*draft.model);
    auto s = loss_position_logits(*draft.model, held);
    if (lora) lora->detach();
    return forward_kl_loss(s, t).item<double>();
  };
  const double before = held_kl(nullptr);
  LoraConfig lc = DraftFamilyConfig::default_lora();
  lc.r = 8, lc.dropout = 0.0;
  DraftObjective obj(draft.model, teacher, lc, {}, 1);
  TrainConfig tc;
  tc.batch_size = 8, tc.max_steps = 40, tc.lr = 5e-3, tc.progress = false, tc.seed = 2;
  train(obj, train_set, tc, test::scratch_dir("distill_real"));
  const double after = held_kl(&obj.adapter());
  EXPECT_GT(before, 1e-3);
  EXPECT_LT(after, 0.7 * before) << "held-out KL " << before << " -> " << after;
}
