// `drafteu experiment`: config presets and validation, and a tiny end-to-end run of the whole
// pipeline through the CLI (outputs, step reuse on rerun, the report rendered by Chromium).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "distill/data.h"
#include "eval/experiment_config.h"
#include "family/low_rank_family.h"
#include "family/noise.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "test_errors.h"
#include "test_support.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace drafteu::eval {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

TEST(ExperimentConfig, PresetsParseAndOverridesApply) {
  for (const auto& name : experiment_preset_names()) {
    const auto c = experiment_config_from_json(json::object(), name, "test");
    EXPECT_EQ(c.preset, name);
    EXPECT_EQ(c.members, 3);
    EXPECT_DOUBLE_EQ(c.sigma, 0.2);
  }
  const auto c =
      experiment_config_from_json({{"fidelity", {{"trials", 2}}}, {"seed", 9}}, "quick", "f");
  EXPECT_EQ(c.trials, 2);
  EXPECT_EQ(c.seed, 9u);
  EXPECT_EQ(c.json["fidelity"]["trials"], 2);
}

TEST(ExperimentConfig, ErrorsNameTheField) {
  {  // Found by fuzz_experiment_config: a non-string preset threw nlohmann's bare type_error.
    const fs::path f = test::scratch_dir("experiment_config_preset") / "c.json";
    write_file_atomic(f, "{\"preset\": 5}");
    EXPECT_NE(test::error_of([&] {
                load_experiment_config("", f);
              }).find(f.string() + ": field 'preset' must be a string"),
              std::string::npos);
  }
  EXPECT_NE(test::error_of([] {
              experiment_config_from_json({{"fidelity", {{"trails", 2}}}}, "quick", "my.json");
            }).find("unknown field 'fidelity.trails'"),
            std::string::npos);
  EXPECT_NE(test::error_of([] {
              experiment_config_from_json({{"bogus", 1}}, "quick", "my.json");
            }).find("my.json: unknown field 'bogus'"),
            std::string::npos);
  EXPECT_NE(test::error_of([] {
              experiment_config_from_json({{"data", {{"prompts", "x"}}}}, "quick", "f");
            }).find("'data.prompts'"),
            std::string::npos);
  // Found by fuzz_experiment_config: a huge width overflowed (signed, UB) in the testbed's
  // intermediate size; a vocabulary past INT32_MAX wrapped silently.
  for (const char* field : {"target_hidden", "draft_hidden", "vocab"})
    for (const json& value :
         {json(int64_t{9223372036854775807}), json(uint64_t{1} << 63), json(int64_t{1} << 32)})
      EXPECT_NE(test::error_of([&] {
                  experiment_config_from_json({{"testbed", {{field, value}}}}, "tiny", "f");
                }).find(std::string("'testbed.") + field + "' must be a"),
                std::string::npos)
          << field << " = " << value;
  // A float where an integer belongs was cast with undefined behaviour (UBSan).
  EXPECT_NE(test::error_of([] {
              experiment_config_from_json({{"seed", 1e300}}, "tiny", "f");
            }).find("'seed' must be an integer"),
            std::string::npos);
  EXPECT_NE(test::error_of([] {
              experiment_config_from_json({{"proxy", {{"k", {3, 1e300}}}}}, "tiny", "f");
            }).find("'proxy.k.1' must be an integer"),
            std::string::npos);
  EXPECT_NE(test::error_of([] {
              experiment_config_from_json({{"proxy", {{"truth", "posterior"}}}}, "tiny", "f");
            }).find("'proxy.truth'"),
            std::string::npos);
  for (const json& bad :
       {json{{"proxy_modules", {"q_proj", "lm_head"}}}, json{{"proxy_modules", json::array()}},
        json{{"init_noise_at", "sideways"}}}) {
    const std::string err = test::error_of([&] {
      experiment_config_from_json({{"train", bad}}, "tiny", "f");
    });
    EXPECT_NE(err.find("'train." + bad.begin().key() + "'"), std::string::npos) << err;
  }
  EXPECT_NE(test::error_of([] {
              experiment_config_from_json({{"testbed", {{"phrasing", "poetic"}}}}, "tiny", "f");
            }).find("'testbed.phrasing'"),
            std::string::npos);
  EXPECT_NE(
      test::error_of([] { experiment_config_from_json({}, "huge", "f"); }).find("unknown preset"),
      std::string::npos);
}

TEST(ExperimentConfig, PaperConfigParsesAndValidationNamesMissingPaths) {
  const fs::path file =
      fs::path(std::getenv("DRAFTEU_TESTS_DIR")) / ".." / "configs" / "paper-llama3.json";
  const auto c = load_experiment_config("", file);
  EXPECT_EQ(c.preset, "full");
  EXPECT_TRUE(c.real_models());
  EXPECT_NE(c.target_model.find("Llama-3.1-8B-Instruct"), std::string::npos);
  const auto msg = test::error_of([&] { validate_experiment_config(c, file.string()); });
  EXPECT_NE(msg.find("'models.target'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Llama-3.1-8B-Instruct"), std::string::npos) << msg;
}

TEST(ExperimentConfig, ValidationChecksModelsModulesAndGsm8k) {
  const fs::path dir = test::scratch_dir("experiment_validate");
  for (const char* m : {"target", "draft"}) {
    fs::create_directories(dir / m);
    write_file_atomic(dir / m / "config.json", LlamaConfig::preset("tiny").to_hf_json().dump());
  }
  write_file_atomic(dir / "train.jsonl", "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n");
  write_file_atomic(dir / "bad.jsonl", "{not json\n");
  json o = {{"models",
             {{"target", (dir / "target").string()},
              {"draft", (dir / "draft").string()},
              {"gsm8k_train", (dir / "train.jsonl").string()},
              {"gsm8k_test", (dir / "train.jsonl").string()}}}};
  EXPECT_NO_THROW(validate_experiment_config(experiment_config_from_json(o, "quick", "c"), "c"));

  auto modules = o;
  modules["family"] = {{"modules", {"q_proj", "nope_proj"}}};
  auto msg = test::error_of(
      [&] { validate_experiment_config(experiment_config_from_json(modules, "quick", "c"), "c"); });
  EXPECT_NE(msg.find("'family.modules'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("nope_proj"), std::string::npos) << msg;

  auto gsm = o;
  gsm["models"]["gsm8k_test"] = (dir / "bad.jsonl").string();
  msg = test::error_of(
      [&] { validate_experiment_config(experiment_config_from_json(gsm, "quick", "c"), "c"); });
  EXPECT_NE(msg.find("'models.gsm8k_test'"), std::string::npos) << msg;

  auto partial = o;
  partial["models"]["draft"] = "";
  msg = test::error_of(
      [&] { validate_experiment_config(experiment_config_from_json(partial, "quick", "c"), "c"); });
  EXPECT_NE(msg.find("'models.draft'"), std::string::npos) << msg;
}

TEST(ExperimentConfig, StoriesTaskNeedsATargetAndChecksItsFields) {
  const auto c = experiment_config_from_json(json::object(), "stories260k", "preset stories260k");
  EXPECT_EQ(c.task, "stories");
  EXPECT_FALSE(c.has_labels());
  auto msg = test::error_of([&] { validate_experiment_config(c, "preset stories260k"); });
  EXPECT_NE(msg.find("'models.target'"), std::string::npos) << msg;
  msg = test::error_of([&] {
    experiment_config_from_json(json{{"task", "poems"}}, "quick", "c.json");
  });
  EXPECT_NE(msg.find("c.json: field 'task'"), std::string::npos) << msg;
  msg = test::error_of([&] {
    experiment_config_from_json(json{{"stories", {{"test_prompts", 500}}}}, "stories260k", "c");
  });
  EXPECT_NE(msg.find("'stories.test_prompts'"), std::string::npos) << msg;
}

void expect_finite(const json& j, const std::string& key, const std::string& where) {
  ASSERT_TRUE(j.contains(key)) << where << " lacks " << key;
  ASSERT_TRUE(j[key].is_number()) << where << "." << key << " = " << j[key].dump();
  EXPECT_TRUE(std::isfinite(j[key].get<double>())) << where << "." << key;
}

const json& step_of(const json& r, const std::string& name) {
  for (const auto& s : r["steps"])
    if (s["step"] == name) return s;
  ADD_FAILURE() << "no step " << name;
  static const json none = json::object();
  return none;
}

double auroc_of(const std::vector<double>& score, const std::vector<int>& positive) {
  double pairs = 0, wins = 0;  // P(score of a positive > score of a negative), ties half
  for (size_t i = 0; i < score.size(); ++i)
    for (size_t j = 0; j < score.size(); ++j)
      if (positive[i] && !positive[j]) {
        pairs += 1;
        wins += score[i] > score[j] ? 1.0 : score[i] == score[j] ? 0.5 : 0.0;
      }
  return pairs > 0 ? wins / pairs : std::nan("");
}

// mean_m KL(p_m ‖ p̄) per position of logits [K, T, V], computed here with torch alone.
torch::Tensor mean_kl_to_mean(const torch::Tensor& logits) {
  auto logp = torch::log_softmax(logits.to(torch::kFloat64), -1);
  auto logbar = torch::log(logp.exp().mean(0));
  return (logp.exp() * (logp - logbar)).sum(-1).mean(0);
}

// TokUR's detection scores are the EU of TokUR's own family (B.5: per-token redraws of the
// target's q/v projections, member 0 unperturbed, K = tokur_samples), recomputed here for one
// answer; the truth's family on the same answer gives other numbers, so a swap fails.
void expect_tokur_scores_its_own_family(const json& r, const fs::path& out) {
  std::istringstream in(read_text_file(out / "tokens_detection.jsonl"));
  std::string line;
  ASSERT_TRUE(static_cast<bool>(std::getline(in, line)));
  const json a = json::parse(line);
  const auto prompt = a["prompt_ids"].get<std::vector<int64_t>>();
  const auto response = a["ids"].get<std::vector<int64_t>>();
  const auto reported = a["eu"]["tokur"].get<std::vector<double>>();
  ASSERT_EQ(reported.size(), response.size());
  torch::NoGradGuard no_grad;
  LoadedModel target = load_model(r["testbed"]["target"].get<std::string>());
  std::vector<int64_t> ids = prompt;
  ids.insert(ids.end(), response.begin(), response.end() - 1);
  const auto input = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  const int64_t first = static_cast<int64_t>(prompt.size()) - 1;
  const int64_t n = static_cast<int64_t>(response.size());
  auto eu_of = [&](NoiseConfig noise, int64_t members) {
    LowRankFamily family(target.model, NoiseSampler(*target.model, noise).members(members));
    return mean_kl_to_mean(family.forward(input).select(1, 0).narrow(1, first, n));
  };
  const uint64_t seed = r["config"]["seed"].get<uint64_t>();
  auto tokur = NoiseConfig::tokur(seed * 100 + 50);  // detection set 0
  tokur.per_token = tokur.keep_unperturbed = true;
  const auto own = eu_of(tokur, r["config"]["detection"]["tokur_samples"].get<int64_t>());
  const auto& fam = r["config"]["family"];
  auto truth = NoiseConfig::target_family(seed * 100 + 50);
  truth.sigma = fam["sigma"].get<double>();
  truth.rank = fam["rank"].get<int64_t>();
  truth.relative = fam["relative"].get<bool>();
  truth.target_modules = fam["modules"].get<std::vector<std::string>>();
  const auto other = eu_of(truth, fam["members"].get<int64_t>());
  const auto got = torch::tensor(reported, torch::kFloat64);
  const double tol = 1e-3 * own.abs().max().item<double>() + 1e-7;
  EXPECT_LE((got - own).abs().max().item<double>(), tol) << "TokUR scored another family";
  EXPECT_GT((other - own).abs().max().item<double>(), 10 * tol) << "the check could not fail";
}

// Wiring the tiny run's numbers cannot hide: each check fails if a model or a score is swapped.
void expect_wiring(const json& r, const fs::path& out) {
  const uint64_t seed = r["config"]["seed"].get<uint64_t>();
  // Draft (s, m) of the DDD pool learnt from member m of the truth's family on partition s only.
  const auto samples = distill::read_samples(
      fs::path(step_of(r, "data-drafts")["dir"].get<std::string>()) / "data.jsonl");
  std::vector<int64_t> prompts;
  for (const auto& x : samples) prompts.push_back(x.prompt_index);
  std::sort(prompts.begin(), prompts.end());
  prompts.erase(std::unique(prompts.begin(), prompts.end()), prompts.end());
  const fs::path pool = step_of(r, "drafts-ddd")["dir"].get<std::string>();
  int drafts = 0;
  for (int64_t s = 0; s < 3; ++s)
    for (int64_t m = 0; m < 3; ++m, ++drafts) {
      const fs::path d = pool / ("draft-s" + std::to_string(s) + "-m" + std::to_string(m));
      const json desc = json::parse(read_text_file(d / "draft.json"));
      EXPECT_EQ(desc["split"], s);
      EXPECT_EQ(desc["member"], m);
      EXPECT_EQ(desc["teacher"], "member");
      EXPECT_EQ(desc["teacher_noise"]["seed"].get<uint64_t>(), seed) << "the truth's family";
      EXPECT_EQ(desc["teacher_noise"]["sigma"], r["config"]["family"]["sigma"]);
      const auto part = distill::prompt_partition(prompts, 3, s, seed);
      const json manifest = json::parse(read_text_file(d / "manifest.json"));
      ASSERT_FALSE(manifest["prompts_seen"].empty()) << d;
      for (const auto& p : manifest["prompts_seen"])
        EXPECT_TRUE(std::binary_search(part.begin(), part.end(), p.get<int64_t>()))
            << d << " saw prompt " << p << " outside partition " << s;
    }
  EXPECT_EQ(drafts, 9);
  // Table 8's one epoch each: IDD drafts (the whole set) and FDD drafts (one of 2 splits) make
  // as many passes over their own samples as a DDD draft over its partition (1 of 3); equal
  // steps would give IDD a third of DDD's passes.
  auto passes = [&](const std::string& family) {
    const json m = json::parse(
        read_text_file(fs::path(step_of(r, "drafts-" + family)["dir"].get<std::string>()) /
                       "draft-s0-m0" / "manifest.json"));
    return m["final"]["steps"].get<double>() * m["train"]["batch_size"].get<double>() /
           m["samples"].get<double>();
  };
  for (const char* family : {"idd", "fdd"})
    EXPECT_NEAR(passes(family) / passes("ddd"), 1.0, 0.25) << family;
  // IDD/FDD drafts start from their own noise (B.2's N(0, 0.5)), placed as configured; DDD's
  // from none.
  for (const char* family : {"idd", "fdd", "ddd"}) {
    const json desc = json::parse(read_text_file(
        fs::path(step_of(r, std::string("drafts-") + family)["dir"].get<std::string>()) /
        "draft-s0-m1" / "draft.json"));
    const bool noisy = std::string(family) != "ddd";
    EXPECT_EQ(desc["init_noise"].get<bool>(), noisy) << family;
    if (!noisy) continue;
    EXPECT_EQ(desc.value("init_noise_at", "frozen"), r["config"]["train"]["init_noise_at"])
        << family;
    EXPECT_EQ(desc["init_noise_config"]["sigma"], r["config"]["train"]["init_sigma"]) << family;
    EXPECT_NE(desc["init_noise_config"]["seed"], desc["teacher_noise"]["seed"]) << family;
  }
  // p_mix's data came from the three members, in equal parts.
  const auto proxy_samples = distill::read_samples(
      fs::path(step_of(r, "data-proxy")["dir"].get<std::string>()) / "data.jsonl");
  std::map<int64_t, size_t> per_member;
  for (const auto& x : proxy_samples) ++per_member[x.member];
  ASSERT_EQ(per_member.size(), 3u);
  EXPECT_EQ(per_member[0], per_member[1]);
  EXPECT_EQ(per_member[1], per_member[2]);
  // The detection score is the configured aggregate (mean) of DDD's per-token EU: the logistic
  // map is monotone, so its AUROC is that of the raw score or of its negation.
  std::vector<double> mean_eu, max_eu;
  std::vector<int> wrong;
  std::istringstream in(read_text_file(out / "tokens_detection.jsonl"));
  std::string line;
  while (std::getline(in, line)) {
    const json a = json::parse(line);
    if (a["set"] != 0 || a["split"] != "test") continue;
    const auto eu = a["eu"]["ddd"].get<std::vector<double>>();
    double sum = 0, top = -1;
    for (double v : eu) sum += v, top = std::max(top, v);
    mean_eu.push_back(sum / static_cast<double>(eu.size()));
    max_eu.push_back(top);
    wrong.push_back(a["correct"].get<bool>() ? 0 : 1);
  }
  const json& reported = r["detection"]["ddd"]["sets"][0]["auroc"];
  const double a = auroc_of(mean_eu, wrong);
  if (reported.is_number() && std::isfinite(a)) {
    const double got = reported.get<double>();
    EXPECT_TRUE(std::abs(got - a) < 1e-9 || std::abs(got - (1 - a)) < 1e-9)
        << "reported " << got << ", mean-EU AUROC " << a << ", max-EU AUROC "
        << auroc_of(max_eu, wrong);
  }
  EXPECT_EQ(r["detection"]["ddd"]["sets"][0]["model"]["feature"][0], "eu_mean");
  // p_mix's OSD teachers are members of the truth's family: the same noise, seed and size (B.1).
  const json osd_key = json::parse(read_text_file(
      fs::path(step_of(r, "proxy-osd")["dir"].get<std::string>()) / "manifest.json"))["key"];
  EXPECT_EQ(osd_key["osd"]["teachers"], "family");
  EXPECT_EQ(osd_key["osd"]["teacher_noise"], osd_key["family"]["noise"]);
  EXPECT_EQ(osd_key["osd"]["teacher_noise"]["seed"].get<uint64_t>(), seed);
  EXPECT_EQ(osd_key["osd"]["family_members"], r["config"]["family"]["members"]);
  EXPECT_EQ(osd_key["osd"]["n_teachers"], 2);
  expect_tokur_scores_its_own_family(r, out);
  // The proxy table's truth is the ground-truth family (§4.1) whose mean p_mix learnt.
  EXPECT_EQ(r["config"]["proxy"]["truth"], "family");
  EXPECT_EQ(r["proxy_truth"]["kind"], "family");
  EXPECT_EQ(r["proxy_truth"]["members"], r["config"]["family"]["members"]);
  // TokUR at K = 3 and K = 10 are two families; p_mix is not the target.
  EXPECT_NE(r["proxy"]["pmix"]["k3"]["runs"], r["proxy"]["orig"]["k3"]["runs"]);
  // Each centre's offset KL(p̄ ‖ centre) from the truth members' mean: a KL, non-zero for the
  // unperturbed target (noise of relative sigma moves the mean), another value for p_mix.
  std::set<std::string> refs;
  for (const auto& [ref, by_k] : r["proxy"].items()) refs.insert(ref);
  EXPECT_EQ(refs, (std::set<std::string>{"orig", "pmix"}));
  const json& offset = r["proxy_centre_offset"];
  for (const char* ref : {"orig", "pmix", "true_eu"}) {
    ASSERT_TRUE(offset[ref].is_number()) << ref;
    EXPECT_GT(offset[ref].get<double>(), 0.0) << ref;
  }
  EXPECT_NE(offset["orig"], offset["pmix"]);
}

// Threads of every tiny run here. A step is byte-identical run to run on one thread count; across
// counts libtorch's multi-threaded kernels may sum in another order (the last bits of the training
// steps' floats, ~1e-9 relative in the results), so the uninterrupted and the killed runs share
// this count. One thread: the suite runs two tests at a time on two cores, where a second OpenMP
// thread per process only contends (under load here the tiny run took 132 s on two threads, 30 s
// on one).
constexpr int kThreads = 1;

double run_tiny(const fs::path& out, const fs::path& work, test::CommandResult* result) {
  const auto t0 = std::chrono::steady_clock::now();
  *result = test::run_command(test::drafteu_bin() + " --threads " + std::to_string(kThreads) +
                              " experiment --preset tiny --out '" + out.string() + "' --work '" +
                              work.string() + "'");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The uninterrupted tiny run, made once per test process and shared: the end-to-end test checks
// and reruns it, the kill test compares every killed step with it.
struct TinyRun {
  fs::path root, out, work;
  test::CommandResult result;
  double seconds = 0;
};

const TinyRun& straight_tiny_run() {
  static const TinyRun run = [] {
    TinyRun r;
    r.root = test::scratch_dir("experiment_tiny");
    r.out = r.root / "out";
    r.work = r.root / "work";
    r.seconds = run_tiny(r.out, r.work, &r.result);
    return r;
  }();
  return run;
}

TEST(Experiment, TinyRunEndToEndThenReusesEveryStep) {
  const TinyRun& straight = straight_tiny_run();
  const fs::path root = straight.root, out = straight.out, work = straight.work;
  const test::CommandResult& first = straight.result;
  const double t1 = straight.seconds;
  ASSERT_EQ(first.exit_code, 0) << first.err;
  test::CommandResult second;
  for (const char* f : {"report.html", "summary.md", "results.json", "fidelity.csv",
                        "fidelity_runs.csv", "proxy_runs.csv", "detection_sets.csv", "cost.csv",
                        "tokens_fidelity.jsonl", "tokens_detection.jsonl"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  // One CSV per summary table, each under its own name (the two fidelity tables once collided).
  std::set<std::string> csv;
  for (const auto& e : fs::directory_iterator(out))
    if (e.path().filename().string().rfind("table_", 0) == 0) csv.insert(e.path().filename());
  EXPECT_EQ(csv, (std::set<std::string>{
                     "table_the_paper_s_findings.csv", "table_testbed.csv", "table_regime.csv",
                     "table_eu_fidelity.csv", "table_eu_fidelity_at_k_6.csv",
                     "table_proxy_centre_offsets_from_the_truth_family_s_mean.csv",
                     "table_proxy_robustness.csv", "table_hallucination_detection.csv",
                     "table_cost_per_generated_token.csv",
                     "table_training_budgets_against_the_paper_s_tables_7_10.csv"}));
  const json r = json::parse(read_text_file(out / "results.json"));
  for (const char* m : {"untrained", "gkd", "minillm", "idd", "fdd", "ddd_1x3", "ddd_2x3",
                        "ddd_3x3", "only_3", "only_6", "only_9"}) {
    const json& j = r["eu_fidelity"][m];
    for (const char* k : {"rmse_mean", "rmse_std", "spearman_mean", "spearman_std", "ccc_mean"})
      expect_finite(j, k, m);
    EXPECT_EQ(j["runs"].size(), 5u) << m;
  }
  for (const char* ref : {"orig", "pmix"})
    for (const char* k : {"k3", "k10"})
      for (const char* f : {"rmse_mean", "rmse_std", "spearman_mean"})
        expect_finite(r["proxy"][ref][k], f, std::string(ref) + "." + k);
  // Detection metrics are NaN (null) when a test split holds one class only, which the tiny
  // testbed's near-zero accuracy allows; they must be there, and finite otherwise.
  for (const char* m : {"ddd", "untrained", "tokur"})
    for (const char* k : {"auroc_mean", "auroc_std", "ece_mean", "brier_mean", "prr_mean"}) {
      const json& j = r["detection"][m];
      ASSERT_TRUE(j.contains(k)) << m << " lacks " << k;
      EXPECT_TRUE(j[k].is_null() || std::isfinite(j[k].get<double>())) << m << "." << k;
    }
  for (const char* k : {"brier_mean", "ece_mean"}) expect_finite(r["detection"]["ddd"], k, "ddd");
  for (const auto& [m, j] : r["cost"].items())
    if (j.is_object())
      for (const char* k : {"flops_per_token", "seconds_per_token"}) expect_finite(j, k, m);
  for (const char* k : {"target_accuracy", "draft_accuracy"})
    expect_finite(r["testbed"], k, "testbed");
  for (const char* m : {"untrained", "gkd", "minillm", "idd", "fdd", "ddd_2x3", "only_6"})
    for (const char* k : {"rmse_mean", "spearman_mean", "ccc_mean"})
      expect_finite(r["eu_fidelity_k6"][m], k, std::string("k6.") + m);
  for (const char* k : {"true_eu_mean", "draft_kl_to_target", "target_accuracy"})
    expect_finite(r["regime"], k, "regime");
  EXPECT_EQ(r["regime"]["member_accuracy"].size(), 3u);
  EXPECT_EQ(r["regime"]["delta_rel"].size(), 7u) << "all seven modules perturbed";
  for (const auto& [m, v] : r["regime"]["delta_rel"].items())  // relative sigma 0.2
    EXPECT_NEAR(v.get<double>(), 0.2, 0.08) << m;
  for (const char* m : {"ddd", "untrained", "tokur", "tokur_k10"})
    ASSERT_TRUE(r["detection"].contains(m)) << m;
  expect_wiring(r, out);
  EXPECT_NE(first.out.find("EU fidelity"), std::string::npos) << "summary printed at the end";

  // Rerun: every step reused, same numbers, much faster.
  const double t2 = run_tiny(out, work, &second);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const json r2 = json::parse(read_text_file(out / "results.json"));
  for (const char* k :
       {"eu_fidelity", "eu_fidelity_k6", "regime", "proxy", "detection", "cost", "testbed"})
    EXPECT_EQ(r2[k], r[k]) << k;
  for (const auto& s : r2["steps"]) EXPECT_TRUE(s["reused"].get<bool>()) << s.dump();
  EXPECT_LT(t2, t1 / 3) << "first " << t1 << " s, rerun " << t2 << " s";

  // The report renders in headless Chromium with both charts and without script errors.
  const fs::path profile = root / "chromium-profile";
  const auto dom = test::run_command(
      "/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-background-networking "
      "--disable-component-update --disable-sync --no-first-run --enable-logging=stderr --v=0 "
      "--user-data-dir='" +
      profile.string() + "' --dump-dom 'file://" + fs::absolute(out / "report.html").string() +
      "'");
  ASSERT_EQ(dom.exit_code, 0) << dom.err;
  for (const char* fig : {"<figure id=\"fig1\"><svg", "<figure id=\"fig2\"><svg"})
    EXPECT_NE(dom.out.find(fig), std::string::npos) << fig;
  EXPECT_EQ(dom.err.find("Uncaught"), std::string::npos) << dom.err;
  EXPECT_EQ(dom.err.find(":CONSOLE("), std::string::npos) << dom.err;
}

// The temporary directories of killed runs go when their process is gone, or a zombie (a run
// killed under a wrapper lingers so until init reaps it); a live process's stay.
TEST(StepCache, StaleTemporaryDirectoriesOfGoneAndZombieRunsAreRemoved) {
  const fs::path dir = test::scratch_dir("experiment_stale_tmp");
  const pid_t zombie = fork();
  if (zombie == 0) _exit(0);
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(zombie), &info, WEXITED | WNOWAIT), 0);  // not reaped
  const pid_t gone = fork();
  if (gone == 0) _exit(0);
  waitpid(gone, nullptr, 0);
  for (pid_t p : {zombie, gone, getpid()})
    fs::create_directories(dir / (".tmp-step-0123-" + std::to_string(p)));
  remove_stale_temp_dirs(dir);
  waitpid(zombie, nullptr, 0);
  std::set<std::string> left;
  for (const auto& e : fs::directory_iterator(dir)) left.insert(e.path().filename().string());
  EXPECT_EQ(left, std::set<std::string>{".tmp-step-0123-" + std::to_string(getpid())});
}

// Wall-clock fields (build and run times, timestamps): no two runs share them. They are left out
// of the comparisons below, everything else must match to the byte.
const std::set<std::string>& clock_keys() {
  static const std::set<std::string> keys{
      "created",       "seconds",           "elapsed_s",       "cpu_seconds",       "seconds_mean",
      "seconds_std",   "cpu_seconds_mean",  "cpu_seconds_std", "seconds_per_token", "build_seconds",
      "train_seconds", "train_cpu_seconds", "eval_seconds",    "wall_seconds"};
  return keys;
}

json without_clock(json j) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end();)
      if (clock_keys().count(it.key()))
        it = j.erase(it);
      else
        *it = without_clock(*it), ++it;
  } else if (j.is_array()) {
    for (auto& e : j) e = without_clock(e);
  }
  return j;
}

// The text of a JSON value without its wall-clock fields; `text` itself when it has none.
std::string clock_free(const std::string& text) {
  const json j = json::parse(text), k = without_clock(j);
  return k == j ? text : k.dump();
}

// Files under `dir` (relative paths) with their bytes; a JSON or JSONL file that has wall-clock
// fields re-dumped without them.
std::map<std::string, std::string> step_files(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string text = read_text_file(e.path());
    if (e.path().extension() == ".json") {
      text = clock_free(text);
    } else if (e.path().extension() == ".jsonl") {
      std::string lines;
      bool clock = false;
      std::istringstream in(text);
      for (std::string l; std::getline(in, l);) {
        const std::string c = clock_free(l);
        clock = clock || c != l;
        lines += c + "\n";
      }
      if (clock) text = lines;
    }
    out[fs::relative(e.path(), dir).string()] = text;
  }
  return out;
}

// Every file of `got` as in `want` (and no other file).
void expect_same_step(const fs::path& want, const fs::path& got) {
  const auto a = step_files(want), b = step_files(got);
  std::set<std::string> names;
  for (const auto& [f, _] : a) names.insert(f);
  for (const auto& [f, _] : b) names.insert(f);
  for (const auto& f : names) {
    if (!a.count(f) || !b.count(f)) {
      ADD_FAILURE() << got.filename().string() << "/" << f << " is in one run only";
      continue;
    }
    EXPECT_TRUE(a.at(f) == b.at(f))
        << got.filename().string() << "/" << f << " differs from the uninterrupted run's";
  }
}

std::set<std::string> entries(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// An entry of `dir` named <prefix>...<suffix>.
bool has_entry(const fs::path& dir, const std::string& prefix, const std::string& suffix) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (n.size() >= prefix.size() + suffix.size() && n.rfind(prefix, 0) == 0 &&
        n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
      return true;
  }
  return false;
}

// `cmd` under /bin/sh in its own process group (a SIGKILL to the group ends all of it); `cmd`
// starting with `exec` keeps the returned pid.
pid_t spawn_group(const std::string& cmd) {
  const pid_t pid = fork();
  if (pid > 0) setpgid(pid, pid);
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// One step of the experiment as the kill test sees it: the directory its finished and
// temporary forms live in, its finished name (from the uninterrupted run), its duration there.
struct KillStep {
  std::string name;
  fs::path parent;       // <work> (the testbed: <work>/testbed)
  std::string finished;  // e.g. data-proxy-86e7c7da631920ef
  double seconds = 0;
};

// SIGKILLs `command` (which ends after `step`) three times at seeded random moments while the
// step runs; the run that resumes it is the caller's. A moment is a random fraction in
// [0.02, reach) of the step's uninterrupted duration after this run's temporary directory of the
// step appears. A run that finishes the step before the kill lands (a faster or less loaded machine
// than the uninterrupted run's) is no kill: the finished step is removed and the kill retried with
// reach halved; from the sixth try on the kill lands as soon as the temporary directory appears
// (the shortest tiny step, baseline-gkd, takes about 20 ms; the poll is 1 ms). Returns the
// moments (s) and the tries.
std::vector<double> kill_step_three_times(const std::string& command, const KillStep& step,
                                          uint64_t seed, int* tries) {
  const fs::path finished = step.parent / step.finished;
  const std::string tmp = ".tmp-" + step.name + "-";
  std::mt19937_64 rng(seed);
  std::vector<double> moments;
  double reach = 0.5;
  for (int attempt = 0; attempt < 10 && moments.size() < 3; ++attempt) {
    *tries = attempt + 1;
    const pid_t pid = spawn_group("exec " + command + " >/dev/null 2>&1");
    // This run's temporary directory, not one a killed run left (the run removes those).
    auto running = [&] { return has_entry(step.parent, tmp, "-" + std::to_string(pid)); };
    int status = 0;
    bool ended = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(600);
    while (!running() && std::chrono::steady_clock::now() < deadline) {
      if ((ended = waitpid(pid, &status, WNOHANG) == pid)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (!ended && !running()) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << step.name << ": no temporary directory within 600 s";
      return moments;
    }
    if (ended) {
      ADD_FAILURE() << step.name << ": the run ended before the step started (status " << status
                    << ")";
      return moments;
    }
    const double u =
        attempt >= 5 ? 0.0 : 0.02 + (reach - 0.02) * static_cast<double>(rng() % 1000) / 1000.0;
    std::this_thread::sleep_for(std::chrono::duration<double>(u * step.seconds));
    kill(-pid, SIGKILL);
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && !fs::exists(finished)) {
      moments.push_back(u * step.seconds);
      continue;
    }
    reach /= 2;
    fs::remove_all(finished);
  }
  EXPECT_EQ(moments.size(), 3u) << step.name << ": the runs kept finishing their " << step.seconds
                                << " s step first";
  return moments;
}

// Every step of the tiny experiment (the testbed, both data sets, p_mix, the draft families, the
// baselines and the five evaluation steps) SIGKILLed at three seeded random moments while it
// runs, then resumed. All in one work directory, step after step: a run ends with the step under
// test (--stop-after), so the earlier steps are reused and the later ones do not run; the first
// run of each step also resumes the step before it, killed three times. Each finished step
// directory is byte-identical to the uninterrupted run's (wall-clock fields aside), no temporary
// directory is left, and the resumed experiment's results equal the uninterrupted one's.
// The steps take 0.03-8 s (baseline-gkd the shortest, the testbed the longest); the ~45 runs
// cost mostly their start-up (about 1 s each, loading libtorch): 80-100 s on two loaded cores,
// the uninterrupted run (shared with TinyRunEndToEndThenReusesEveryStep) aside.
TEST(Experiment, EveryStepKilledThreeTimesResumesByteIdentical) {
  const TinyRun& straight = straight_tiny_run();
  ASSERT_EQ(straight.result.exit_code, 0) << straight.result.err;
  const fs::path root = test::scratch_dir("experiment_kill");
  const fs::path out = root / "out", work = root / "work";
  const json r0 = json::parse(read_text_file(straight.out / "results.json"));

  std::vector<KillStep> steps;
  const fs::path testbed = straight.work / "testbed";
  for (const auto& name : entries(testbed))
    steps.push_back(
        {"testbed", work / "testbed", name,
         read_json_file(testbed / name / "testbed.json")["build_seconds"].get<double>()});
  ASSERT_EQ(steps.size(), 1u);
  for (const auto& s : r0["steps"]) {
    const fs::path dir = s["dir"].get<std::string>();
    steps.push_back({s["step"].get<std::string>(), work, dir.filename().string(),
                     read_json_file(dir / "manifest.json")["seconds"].get<double>()});
  }
  ASSERT_EQ(steps.size(), 14u) << r0["steps"].dump();

  auto command = [&](const std::string& stop_after) {
    std::string c = test::drafteu_bin() + " --threads " + std::to_string(kThreads) +
                    " experiment --preset tiny --out '" + out.string() + "' --work '" +
                    work.string() + "'";
    return stop_after.empty() ? c : c + " --stop-after " + stop_after;
  };
  uint64_t seed = 1404;
  for (const auto& step : steps) {
    const auto t0 = std::chrono::steady_clock::now();
    int tries = 0;
    const auto moments = kill_step_three_times(command(step.name), step, seed++, &tries);
    std::ostringstream m;
    for (double t : moments) m << " " << std::fixed << std::setprecision(3) << t;
    std::cout << "[kill] " << step.name << ": " << std::fixed << std::setprecision(2)
              << step.seconds << " s uninterrupted; killed at" << m.str() << " s in " << tries
              << " tries, "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
              << " s" << std::endl;
    if (HasFailure()) return;
  }

  // The run that resumes the last step (cost) and writes the outputs.
  const auto r = test::run_command(command(""));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const auto& step : steps) {
    ASSERT_TRUE(fs::exists(step.parent / step.finished)) << step.name;
    expect_same_step(fs::path(step.name == "testbed" ? testbed : straight.work) / step.finished,
                     step.parent / step.finished);
  }
  EXPECT_EQ(entries(work), entries(straight.work)) << "the same steps, and no .tmp-* left";
  EXPECT_EQ(entries(work / "testbed"), entries(testbed)) << "no .tmp-* left";
  const json r1 = json::parse(read_text_file(out / "results.json"));
  for (const char* k :
       {"eu_fidelity", "eu_fidelity_k6", "regime", "proxy", "detection", "cost", "budgets"})
    EXPECT_EQ(without_clock(r1[k]), without_clock(r0[k])) << k;
  for (const char* k : {"target_accuracy", "draft_accuracy"})
    EXPECT_EQ(r1["testbed"][k], r0["testbed"][k]) << k;
  for (const char* f : {"tokens_fidelity.jsonl", "tokens_detection.jsonl"})
    EXPECT_TRUE(read_text_file(out / f) == read_text_file(straight.out / f)) << f;
}

TEST(Experiment, BadConfigFailsBeforeAnyWork) {
  const fs::path root = test::scratch_dir("experiment_bad");
  write_file_atomic(root / "c.json", "{\"models\": {\"target\": \"/nonexistent/model\"}}");
  const auto r =
      test::run_command(test::drafteu_bin() + " experiment --config '" +
                        (root / "c.json").string() + "' --out '" + (root / "out").string() + "'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("models."), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(root / "out" / "work")) << "no step ran";
}

// The stories260k preset on the real stories260K: prompts are openings of the target's own
// stories, the draft base is a smaller model distilled from it, and there is no detection.
TEST(Experiment, StoriesTaskOnTheRealStories260K) {
  const fs::path root = test::scratch_dir("experiment_stories");
  const fs::path out = root / "out", config = root / "small.json";
  write_file_atomic(
      config,
      json{{"stories",
            {{"samples", 40},
             {"sample_tokens", 32},
             {"test_prompts", 6},
             {"draft_steps", 40},
             {"batch_size", 8}}},
           {"data", {{"prompts", 8}, {"max_new_tokens", 24}}},
           {"train",
            {{"proxy_steps", 2}, {"draft_steps", 1}, {"baseline_steps", 1}, {"batch_size", 2}}},
           {"fidelity", {{"questions", 3}, {"trials", 2}}},
           {"proxy", {{"truth_members", 4}, {"runs", 2}, {"questions", 2}}}}
          .dump());
  const auto run = test::run_command(test::drafteu_bin() +
                                     " --threads 2 experiment --preset stories260k --model '" +
                                     test::stories260k_gguf().string() + "' --config '" +
                                     config.string() + "' --out '" + out.string() + "'");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const json r = json::parse(read_text_file(out / "results.json"));
  EXPECT_EQ(r["task"], "stories");
  EXPECT_TRUE(r["detection"].empty());
  EXPECT_FALSE(fs::exists(out / "tokens_detection.jsonl"));
  const json& st = r["stories"];
  EXPECT_EQ(st["test_prompts"], 6);
  EXPECT_LT(st["draft_parameters"].get<int64_t>(), st["target_parameters"].get<int64_t>() / 3);
  EXPECT_LT(st["draft_final_kd_loss"].get<double>(), 0.8 * st["draft_first_kd_loss"].get<double>())
      << "the draft base did not learn from the target";
  // The target is stories260K itself (converted), the draft shares its vocabulary.
  LoadedModel real = load_model(test::stories260k_gguf());
  LoadedModel target = load_model(r["testbed"]["target"].get<std::string>());
  const LoadedModel draft = load_model(r["testbed"]["draft"].get<std::string>());
  EXPECT_EQ(target.config().vocab_size, real.config().vocab_size);
  EXPECT_EQ(draft.config().vocab_size, real.config().vocab_size);
  EXPECT_EQ(draft.config().hidden_size, 32);
  {
    torch::NoGradGuard no_grad;
    const auto ids = torch::tensor(std::vector<int64_t>{1, 403, 407, 261}).unsqueeze(0);
    EXPECT_LE((target.model->forward(ids) - real.model->forward(ids)).abs().max().item<double>(),
              1e-4);
  }
  // Each evaluation prompt opens one of the target's stories: it starts a text the target
  // wrote, so it is no arithmetic question.
  const fs::path test_jsonl =
      fs::path(r["testbed"]["target"].get<std::string>()).parent_path() / "test.jsonl";
  const auto prompts = distill::read_gsm8k(test_jsonl);
  ASSERT_EQ(prompts.size(), 6u);
  for (const auto& p : prompts) EXPECT_EQ(p.question.find("Question:"), std::string::npos);
  for (const char* m : {"untrained", "ddd_2x3", "gkd"})
    expect_finite(r["eu_fidelity"][m], "rmse_mean", m);
  expect_finite(r["regime"], "true_eu_mean", "regime");
  EXPECT_GT(r["regime"]["true_eu_mean"].get<double>(), 0.0);
  for (const char* ref : {"orig", "pmix"}) expect_finite(r["proxy"][ref]["k3"], "rmse_mean", ref);
}
}  // namespace
}  // namespace drafteu::eval
