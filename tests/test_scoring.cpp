// Scoring existing text: the streamed, chunked, batched scorer against member-by-member forwards
// reduced with textbook formulas, on the real stories260K; and the `drafteu score` CLI.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "family/ensemble.h"
#include "family/low_rank_family.h"
#include "family/noise.h"
#include "model/checkpoint.h"
#include "test_errors.h"
#include "test_support.h"
#include "uncertainty/scoring/score_records.h"
#include "uncertainty/scoring/token_scorer.h"

namespace drafteu {
namespace {

// Probabilities of member k at every position of `seq`, one plain forward each: [K, T, V].
torch::Tensor member_probs(LowRankFamily& fam, const std::vector<int64_t>& seq) {
  std::vector<torch::Tensor> out;
  auto ids = torch::tensor(seq, torch::kInt64).unsqueeze(0);
  for (int64_t k = 0; k < fam.size(); ++k)
    out.push_back(torch::softmax(fam.forward_member(k, ids)[0].to(torch::kFloat64), -1));
  return torch::stack(out);
}

double entropy(const torch::Tensor& p) {  // p [V], float64
  auto q = p.clamp_min(1e-300);
  return -(p * q.log()).sum().item<double>();
}

TEST(TokenScorer, MatchesMemberByMemberTextbookComputation) {
  torch::NoGradGuard ng;
  LoadedModel m = load_model(test::stories260k_gguf());
  auto target = std::make_shared<LowRankFamily>(
      m.model, NoiseSampler(*m.model, NoiseConfig::target_family(11)).members(3));
  auto drafts_cfg = NoiseConfig::target_family(12);
  drafts_cfg.sigma = 0.05;
  auto drafts =
      std::make_shared<LowRankFamily>(m.model, NoiseSampler(*m.model, drafts_cfg).members(4));
  ScoringModels models;
  models.target_family = target;
  models.drafts = drafts;
  models.reference = std::make_shared<Ensemble>(Ensemble::of_one(m.model));
  TokenScorer scorer(models, /*chunk=*/5);  // several chunks

  std::vector<int64_t> prompt = {1};
  for (auto id : m.tokenizer->encode("Once upon a time", false)) prompt.push_back(id);
  std::vector<int64_t> response;
  for (auto id : m.tokenizer->encode(" there was a little dog named Max. He liked to run.", false))
    response.push_back(id);
  auto scored = scorer.score(prompt, response, m.tokenizer.get());
  ASSERT_EQ(scored.size(), response.size());

  std::vector<int64_t> seq = prompt;
  seq.insert(seq.end(), response.begin(), response.end());
  auto pt = member_probs(*target, seq), pd = member_probs(*drafts, seq);
  auto ref =
      torch::softmax(m.model->forward(torch::tensor(seq).unsqueeze(0))[0].to(torch::kFloat64), -1);
  // float32 logits: agreement to ~1e-6 relative.
  auto tol = [](double x) { return 1e-5 * (1 + std::abs(x)); };
  for (size_t i = 0; i < response.size(); ++i) {
    int64_t pos = static_cast<int64_t>(prompt.size() + i) - 1;  // predicts response[i]
    // Lemma 3.1 in its entropy form, by hand: H(mean p) - mean H(p_m).
    auto pbar = pt.select(1, pos).mean(0);
    double aleatoric = 0;
    for (int64_t k = 0; k < 3; ++k) aleatoric += entropy(pt[k][pos]) / 3;
    double eu_true = entropy(pbar) - aleatoric;
    // Estimator terms from their definitions.
    auto qmix = pd.select(1, pos).mean(0);
    double h_qmix = entropy(qmix), jsd = h_qmix;
    for (int64_t k = 0; k < 4; ++k) jsd -= entropy(pd[k][pos]) / 4;
    auto r = ref[pos];
    double bias =
        (qmix * (qmix.clamp_min(1e-300).log() - r.clamp_min(1e-300).log())).sum().item<double>();
    const auto& s = scored[i];
    EXPECT_EQ(s.id, response[i]);
    EXPECT_NEAR(*s.eu_true, eu_true, tol(eu_true)) << i;
    EXPECT_NEAR(*s.jsd, jsd, tol(jsd)) << i;
    EXPECT_NEAR(*s.bias, bias, tol(bias)) << i;
    EXPECT_NEAR(*s.eu_hat, jsd + bias, tol(jsd + bias)) << i;  // Theorem 3.4
    EXPECT_NEAR(*s.entropy_mix, h_qmix, tol(h_qmix)) << i;
    EXPECT_NEAR(*s.entropy_target, entropy(r), tol(entropy(r))) << i;
    EXPECT_GT(*s.eu_true, 0.0);
    if (i < 4) std::printf("token %zu: eu_true %.3g jsd %.3g bias %.3g\n", i, eu_true, jsd, bias);
  }
}

// Where the members are nearly certain the true EU is tiny (1e-7 and below on most tokens of a
// sharpened stories260K) and must keep its relative precision: float32's log-sum-exp rounds a
// tail mass under ~6e-8 away, which put such values off by up to 4x before the scorer normalised
// logits in float64.
TEST(TokenScorer, NearlyCertainTokensKeepTheirEUToRelativePrecision) {
  torch::NoGradGuard ng;
  LoadedModel m = load_model(test::stories260k_gguf());
  m.model->backbone->norm->weight.mul_(3.0);  // logits x3: near-deterministic predictions
  auto cfg = NoiseConfig::target_family(11);
  cfg.sigma = 0.02;  // members close together
  auto target = std::make_shared<LowRankFamily>(m.model, NoiseSampler(*m.model, cfg).members(3));
  ScoringModels models;
  models.target_family = target;
  TokenScorer scorer(models, /*chunk=*/7);
  std::vector<int64_t> prompt = {1};
  for (auto id : m.tokenizer->encode("Once upon a time", false)) prompt.push_back(id);
  std::vector<int64_t> response;
  for (auto id :
       m.tokenizer->encode(" there was a little girl named Lily. She liked to play.", false))
    response.push_back(id);
  const auto scored = scorer.score(prompt, response);
  ASSERT_EQ(scored.size(), response.size());
  std::vector<int64_t> seq = prompt;
  seq.insert(seq.end(), response.begin(), response.end());
  const auto logp = torch::log_softmax(
      torch::stack({target->forward_member(0, torch::tensor(seq).unsqueeze(0))[0],
                    target->forward_member(1, torch::tensor(seq).unsqueeze(0))[0],
                    target->forward_member(2, torch::tensor(seq).unsqueeze(0))[0]})
          .to(torch::kFloat64),
      -1);  // [3, T, V]
  int tiny = 0;
  for (size_t i = 0; i < response.size(); ++i) {
    const int64_t pos = static_cast<int64_t>(prompt.size() + i) - 1;
    const auto lp = logp.select(1, pos);                                       // [3, V]
    const auto lbar = torch::logsumexp(lp, 0) - std::log(3.0);                 // log p̄
    const double eu = (lp.exp() * (lp - lbar)).sum(-1).mean().item<double>();  // mean KL(p_m ‖ p̄)
    tiny += eu < 1e-7;
    EXPECT_NEAR(*scored[i].eu_true, eu, 1e-3 * eu + 1e-15) << "token " << i << " of " << eu;
  }
  EXPECT_GE(tiny, 3) << "the sharpened model must put several tokens below 1e-7";
}

TEST(ScoreCli, WritesOneRecordPerTokenAndRejectsBadInput) {
  auto dir = test::scratch_dir("score_cli");
  auto gguf = test::stories260k_gguf().string();
  {
    std::ofstream in(dir / "in.jsonl");
    in << R"({"prompt": "Once upon a time", "response": " there was a cat."})"
       << "\n"
       << R"({"prompt_ids": [1, 403], "response_ids": [261, 338, 145]})"
       << "\n";
  }
  auto run = [&](const std::string& args) {
    return test::run_command(test::drafteu_bin() + " score --input '" +
                             (dir / "in.jsonl").string() + "' --output '" +
                             (dir / "out.jsonl").string() + "' " + args);
  };
  auto r = run("--target '" + gguf + "' --family-size 3 --seed 1 --draft '" + gguf +
               "' --draft-noise 3 --reference '" + gguf + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream out(dir / "out.jsonl");
  std::string line;
  int n = 0, second = 0;
  while (std::getline(out, line)) {
    auto j = nlohmann::json::parse(line);
    for (const char* key : {"index", "id", "text", "eu_true", "jsd", "bias", "eu_hat",
                            "entropy_target", "entropy_mix"})
      EXPECT_TRUE(j.contains(key)) << key << " in " << line;
    EXPECT_NEAR(j["eu_hat"].get<double>(), j["jsd"].get<double>() + j["bias"].get<double>(), 1e-9);
    second += j["record"] == 1;
    ++n;
  }
  EXPECT_EQ(second, 3);
  EXPECT_GT(n, 3);

  // Ground truth only: estimator keys are omitted.
  r = run("--target '" + gguf + "' --family-size 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream out2(dir / "out.jsonl");
  std::getline(out2, line);
  auto j = nlohmann::json::parse(line);
  EXPECT_TRUE(j.contains("eu_true"));
  EXPECT_FALSE(j.contains("jsd"));

  // Bad input: a broken line names the file and line; bad flags name the flag.
  std::ofstream(dir / "in.jsonl", std::ios::app) << "{\"prompt\": 3}\n";
  r = run("--target '" + gguf + "' --family-size 2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("in.jsonl:3"), std::string::npos) << r.err;
  // Found by fuzz_jsonl: a number too large for a double escaped as nlohmann's out_of_range,
  // naming no file or line.
  std::ofstream(dir / "big.jsonl") << "{\"prompt_ids\": [1], \"response_ids\": [262e425]}\n";
  EXPECT_NE(test::error_of([&] {
              read_score_records((dir / "big.jsonl").string(), nullptr, 512, 64);
            }).find("big.jsonl:1: not valid JSON"),
            std::string::npos);
  r = run("--target '" + gguf + "' --noise gaussian");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--noise"), std::string::npos) << r.err;
  r = run("--draft '" + gguf + "'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--draft-noise"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace drafteu
