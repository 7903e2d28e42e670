// Speculative decoding with uncertainty and the OpenAI-compatible server, against independent
// references: the target's own (warped) distribution (chi-square), plain greedy target decoding,
// a direct full-sequence computation of the uncertainty terms, caches rebuilt from scratch, and
// the server's responses compared with the same requests run one at a time.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "family/ensemble.h"
#include "family/lora.h"
#include "family/low_rank_family.h"
#include "family/noise.h"
#include "model/checkpoint.h"
#include "model/generate.h"
#include "serve/acceptance.h"
#include "serve/calibration.h"
#include "serve/policy.h"
#include "serve/speculative.h"
#include "serve/speculative_batch.h"
#include "test_support.h"
#include "tolerance.h"
#include "uncertainty/uncertainty.h"
#include "util/error.h"

using namespace drafteu;
using namespace drafteu::serve;
using drafteu::test::is_close;

namespace {

// float32 per-token log-probs, and the EU terms summed from them (tests/tolerance.h).
const test::Tolerance kLogProbTol = test::tolerance(test::Dtype::kFloat32, test::Op::kForward);
const test::Tolerance kEuTol = test::tolerance(test::Dtype::kFloat32, test::Op::kLogProbSum);

// Chi-square critical value at significance 0.001 (Wilson-Hilferty; within ~1% for df >= 3).
double chi2_critical_001(int df) {
  const double z = 3.0902, d = static_cast<double>(df);
  const double a = 1.0 - 2.0 / (9.0 * d) + z * std::sqrt(2.0 / (9.0 * d));
  return d * a * a * a;
}

// Pearson chi-square of `counts` against `probs` (same length) over n draws. Cells whose expected
// count is below 5 are pooled into one; a cell of probability 0 must stay empty.
struct ChiSquare {
  double stat = 0;
  int df = 0;
};
ChiSquare chi_square(const std::vector<int64_t>& counts, const std::vector<double>& probs,
                     int64_t n) {
  ChiSquare c;
  double pooled_obs = 0, pooled_exp = 0;
  int cells = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double e = probs[i] * static_cast<double>(n);
    if (probs[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "a token of probability 0 was sampled (cell " << i << ")";
      continue;
    }
    if (e < 5) {
      pooled_obs += static_cast<double>(counts[i]);
      pooled_exp += e;
      continue;
    }
    c.stat += std::pow(static_cast<double>(counts[i]) - e, 2) / e;
    ++cells;
  }
  if (pooled_exp > 0) {
    c.stat += std::pow(pooled_obs - pooled_exp, 2) / pooled_exp;
    ++cells;
  }
  c.df = cells - 1;
  return c;
}

void expect_chi_square_ok(const std::vector<int64_t>& counts, const std::vector<double>& probs,
                          int64_t n, const std::string& what) {
  auto c = chi_square(counts, probs, n);
  ASSERT_GE(c.df, 3) << what;
  EXPECT_LT(c.stat, chi2_critical_001(c.df)) << what << ": chi2 " << c.stat << " df " << c.df;
}

std::vector<SamplingParams> warps() {
  SamplingParams plain;
  SamplingParams warped;
  warped.temperature = 0.8;
  warped.top_k = 6;  // of 8
  warped.top_p = 0.95;
  return {plain, warped};
}

// A tiny Llama with a small vocabulary, its lm_head scaled so the distributions are far from
// uniform (random init alone gives nearly flat ones).
LlamaForCausalLM toy_model(uint64_t seed, int64_t vocab, double sharpen) {
  LlamaConfig c;
  c.vocab_size = vocab, c.hidden_size = 16, c.intermediate_size = 32, c.num_hidden_layers = 1;
  c.num_attention_heads = 2, c.num_key_value_heads = 1, c.head_dim = 8;
  c.max_position_embeddings = 64;
  c.validate("toy");
  torch::manual_seed(seed);
  LlamaForCausalLM m(c);
  m->eval();
  torch::NoGradGuard ng;
  m->lm_head->weight.mul_(sharpen);
  return m;
}

struct Stories {
  LoadedModel target;
  std::shared_ptr<LowRankFamily> drafts;
};
Stories& stories() {
  static Stories s = [] {
    Stories st;
    st.target = load_model(test::stories260k_gguf());
    st.target.model->eval();
    NoiseConfig cfg = NoiseConfig::target_family(0);
    cfg.sigma = 0.05;  // acceptance ~0.75 greedy: rejections happen, EU ~0.03 nats/token
    NoiseSampler sampler(*st.target.model, cfg);
    st.drafts = std::make_shared<LowRankFamily>(st.target.model, sampler.members(3));
    return st;
  }();
  return s;
}

std::vector<int64_t> stories_prompt(const std::string& text = "Once upon a time") {
  auto& tok = *stories().target.tokenizer;
  auto ids = tok.encode(text, true);
  return {ids.begin(), ids.end()};
}

// |a - b| <= tol relative to the largest |b| (keys reach tens; float32 rounding scales with them).
void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tol,
                  const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double scale = std::max(1.0, b.abs().max().item<double>());
  EXPECT_LE((a - b).abs().max().item<double>(), tol * scale) << what;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The acceptance rule alone, on hand-made context-free distributions p_t, q_t: spec decoding in
// rounds of γ = 3 must emit (token 0, token 1) with the joint law p_0 × p_1.
TEST(Acceptance, RoundsReproduceTargetJointOnHandMadeDistributions) {
  const int64_t V = 8, positions = 8, n = 20000;
  torch::manual_seed(11);
  auto p_logits = torch::randn({positions, V});
  auto q_logits = p_logits + torch::randn({positions, V});  // a decent but imperfect draft
  for (const auto& sp : warps()) {
    auto p = warped_log_probs(p_logits, sp), q = warped_log_probs(q_logits, sp);
    Sampler sampler(3);
    std::vector<int64_t> counts(static_cast<size_t>(V * V), 0);
    int64_t rejections = 0;
    for (int64_t s = 0; s < n; ++s) {
      std::vector<int64_t> out;
      while (out.size() < 2) {
        const auto pos = static_cast<int64_t>(out.size());
        const int64_t g = 3;
        std::vector<int64_t> props;
        for (int64_t i = 0; i < g; ++i) props.push_back(draw_proposal(q[pos + i], false, sampler));
        auto v =
            verify_proposals(p.narrow(0, pos, g + 1), q.narrow(0, pos, g), props, false, sampler);
        rejections += v.bonus ? 0 : 1;
        out.insert(out.end(), props.begin(), props.begin() + v.accepted);
        out.push_back(v.token);
      }
      ++counts[static_cast<size_t>(out[0] * V + out[1])];
    }
    EXPECT_GT(rejections, n / 10) << "the test needs rejections to mean anything";
    auto joint = (p[0].exp().unsqueeze(1) * p[1].exp().unsqueeze(0)).reshape(-1).to(torch::kDouble);
    std::vector<double> probs(joint.data_ptr<double>(), joint.data_ptr<double>() + V * V);
    expect_chi_square_ok(counts, probs, n, "temperature " + std::to_string(sp.temperature));
  }
}

TEST(Acceptance, GreedyAcceptsWhileArgmaxMatches) {
  auto p = torch::full({4, 5}, -10.0);
  p[0][1] = 0, p[1][2] = 0, p[2][3] = 0, p[3][4] = 0;
  auto q = torch::log_softmax(torch::zeros({3, 5}), -1);
  Sampler s(0);
  auto v = verify_proposals(p, q, {1, 2, 0}, true, s);
  EXPECT_EQ(v.accepted, 2);
  EXPECT_EQ(v.token, 3);
  EXPECT_FALSE(v.bonus);
  v = verify_proposals(p, q, {1, 2, 3}, true, s);
  EXPECT_EQ(v.accepted, 3);
  EXPECT_EQ(v.token, 4);
  EXPECT_TRUE(v.bonus);
}

// γ schedules: the cost-aware optimum worked out by hand from (1 - α^(γ+1)) / ((1 - α)(1 + γc)),
// and the heuristic's +1/-1.
TEST(Gamma, CostAwareOptimumAndHeuristicSteps) {
  EXPECT_EQ(optimal_gamma(0.5, 0.5, 1, 8), 1);     // γ=1: 1.000, γ=2: 0.875
  EXPECT_EQ(optimal_gamma(0.47, 0.02, 1, 8), 4);   // γ=3: 1.693, γ=4: 1.707, γ=5: 1.697
  EXPECT_EQ(optimal_gamma(0.9, 0.05, 1, 16), 13);  // γ=12: 4.661, γ=13: 4.674, γ=14: 4.671
  EXPECT_EQ(optimal_gamma(0.9, 0.05, 1, 6), 6);    // clipped to max
  EXPECT_EQ(optimal_gamma(1.0, 0.1, 2, 8), 8);     // (γ+1)/(1+0.1γ) grows
  EXPECT_EQ(optimal_gamma(0.0, 0.1, 2, 8), 2);     // one token a round whatever γ

  GammaSchedule heuristic{4, 1, 5, true};
  GammaController h(heuristic, 0.1);
  h.update(4, 4);
  EXPECT_EQ(h.gamma(), 5);
  h.update(5, 5);
  EXPECT_EQ(h.gamma(), 5);
  h.update(5, 2);
  EXPECT_EQ(h.gamma(), 4);

  GammaSchedule cost_aware = heuristic;
  cost_aware.set_rule("cost-aware");
  EXPECT_EQ(cost_aware.name(), "cost-aware");
  GammaController c(cost_aware, 0.5);
  c.update(4, 0);  // α = (0 + 1) / (0 + 1 + 2) = 1/3
  EXPECT_NEAR(c.acceptance(), 1.0 / 3.0, 1e-12);
  EXPECT_EQ(c.gamma(), 1);
  for (int i = 0; i < 20; ++i) c.update(c.gamma(), c.gamma());  // α -> 1
  EXPECT_EQ(c.gamma(), 5);
  cost_aware.cost_ratio = 0.02;  // a given ratio overrides the decoder's
  GammaController given(cost_aware, 0.5);
  for (int i = 0; i < 47; ++i) given.update(1, 1);
  for (int i = 0; i < 53; ++i) given.update(1, 0);  // α = 48 / 102 = 0.47
  EXPECT_EQ(given.gamma(), 4);
  GammaSchedule fixed = heuristic;
  fixed.set_rule("fixed");
  GammaController f(fixed, 0.1);
  f.update(4, 4);
  EXPECT_EQ(f.gamma(), 4);
  EXPECT_THROW(fixed.set_rule("greedy"), Error);
  fixed.cost_ratio = -1;
  EXPECT_THROW(fixed.validate(), Error);
}

// The whole decoder on toy models: the first two generated tokens follow the target's warped
// joint law, with a mixture proposer over two drafts and with one draft proposing.
TEST(Speculative, SamplesFollowTargetLawOnToyModels) {
  const int64_t V = 8, n = 1000;
  auto target = toy_model(1, V, 2.5);
  auto drafts = std::make_shared<Ensemble>(
      std::vector<LlamaForCausalLM>{toy_model(2, V, 2.5), toy_model(3, V, 2.5)});
  SpeculativeDecoder dec(target, drafts);
  const std::vector<int64_t> prompt = {1, 4};
  int config = 0;
  for (const auto& sp : warps()) {
    SpeculativeOptions o;
    o.sampling = sp;
    o.max_new_tokens = 2;
    o.gamma = {2, 1, 3, true};
    o.proposer = config == 0 ? Proposer::parse("mixture") : Proposer::parse("1");
    std::vector<int64_t> counts(static_cast<size_t>(V * V), 0);
    int64_t proposed = 0, accepted = 0;
    for (int64_t s = 0; s < n; ++s) {
      o.seed = static_cast<uint64_t>(s);
      auto r = dec.generate(prompt, o);
      ASSERT_EQ(r.tokens.size(), 2u);
      ++counts[static_cast<size_t>(r.tokens[0].id * V + r.tokens[1].id)];
      proposed += r.stats.proposed, accepted += r.stats.accepted;
    }
    EXPECT_GT(proposed - accepted, n / 10) << "the test needs rejections to mean anything";
    // Reference: p(t0) p(t1 | t0) from plain target forwards, warped the same way.
    torch::NoGradGuard ng;
    std::vector<double> probs;
    auto ids = torch::tensor(prompt).unsqueeze(0);
    auto p0 = warped_log_probs(target->forward(ids)[0][-1], sp).exp();
    for (int64_t a = 0; a < V; ++a) {
      auto ids1 = torch::cat({ids, torch::full({1, 1}, a, torch::kInt64)}, 1);
      auto p1 = warped_log_probs(target->forward(ids1)[0][-1], sp).exp();
      for (int64_t b = 0; b < V; ++b) probs.push_back(p0[a].item<double>() * p1[b].item<double>());
    }
    expect_chi_square_ok(counts, probs, n, "config " + std::to_string(config));
    ++config;
  }
}

TEST(Speculative, GreedyEqualsTargetAndRecordsMatchDirectComputation) {
  auto& st = stories();
  auto& target = *st.target.model;
  auto prompt = stories_prompt();
  GenerateOptions go;
  go.sampling.temperature = 0;
  go.max_new_tokens = 48;
  auto plain = generate(target, prompt, go);

  SpeculativeDecoder dec(st.target.model, st.drafts);
  SpeculativeOptions o;
  o.sampling.temperature = 0;
  o.max_new_tokens = 48;
  o.gamma = {3, 1, 6, true};
  auto r = dec.generate(prompt, o);
  ASSERT_EQ(r.tokens.size(), plain.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_EQ(r.tokens[i].id, plain[i].id) << "token " << i;
    EXPECT_TRUE(is_close(r.tokens[i].logprob, plain[i].logprob, kLogProbTol)) << "token " << i;
  }
  EXPECT_LT(r.stats.accepted, r.stats.proposed) << "drafts too close: no rejection exercised";
  EXPECT_GT(r.stats.accepted, 0);
  // The time split: the prompt's prefill is charged apart from the rounds, whose parts fit in
  // their total.
  EXPECT_GT(r.stats.prefill_s, 0.0);
  EXPECT_GT(r.stats.draft_s, 0.0);
  EXPECT_GT(r.stats.target_s, 0.0);
  EXPECT_LE(r.stats.draft_s + r.stats.target_s + r.stats.uncertainty_s, r.stats.total_s * 1.0001);

  // Direct computation over the final text: one target forward, one family forward.
  torch::NoGradGuard ng;
  std::vector<int64_t> text = prompt;
  for (const auto& t : r.tokens) text.push_back(t.id);
  auto ids = torch::tensor(text).unsqueeze(0);
  const auto L = static_cast<int64_t>(prompt.size()), T = static_cast<int64_t>(r.tokens.size());
  auto tlog = torch::log_softmax(target.forward(ids)[0].narrow(0, L - 1, T), -1);
  auto dlog = torch::log_softmax(st.drafts->forward(ids).select(1, 0).narrow(1, L - 1, T), -1);
  auto est = uncertainty::draft_estimator(dlog, tlog);
  auto h = uncertainty::entropy(tlog);
  for (int64_t i = 0; i < T; ++i) {
    const auto& u = r.tokens[static_cast<size_t>(i)].uncertainty;
    ASSERT_TRUE(u.has_value());
    EXPECT_TRUE(is_close(u->jsd, est.jsd[i].item<double>(), kEuTol)) << "jsd, token " << i;
    EXPECT_TRUE(is_close(u->bias, est.bias[i].item<double>(), kEuTol)) << "bias, token " << i;
    EXPECT_TRUE(is_close(u->eu_hat, est.eu_hat[i].item<double>(), kEuTol)) << "eu_hat, token " << i;
    EXPECT_TRUE(is_close(u->entropy, h[i].item<double>(), kEuTol)) << "entropy, token " << i;
  }
  EXPECT_GT(est.eu_hat.max().item<double>(), 0.0);
}

// The valid (unmasked) positions of batch row `row` in a cache layer: [Hkv, n, hd]. An expanded
// layer holds member-major tiles of the batch rows: member m's row is at m * B + row.
torch::Tensor valid_positions(const torch::Tensor& layer, const KVCache& cache, int64_t row,
                              int64_t member = 0) {
  auto keep = cache.key_mask()[row].nonzero().view({-1});
  return layer[member * cache.key_mask().size(0) + row].index_select(1, keep);
}

// Several sequences decoded together (joining at different rounds, with different prompts,
// temperatures and γ): after every round each row's unmasked cache positions equal the caches of
// decoding its kept text alone from scratch, and each row's output equals its run alone.
TEST(Speculative, BatchedRowsMatchAloneAndCachesMatchFreshDecode) {
  auto& st = stories();
  auto& target = *st.target.model;
  SpeculativeDecoder dec(st.target.model, st.drafts);
  const int64_t layers = target.config().num_hidden_layers;
  struct Case {
    std::vector<int64_t> prompt;
    double temperature;
    GammaSchedule gamma;
    int64_t join_round;
  };
  const int64_t bos = stories_prompt("").front();
  std::vector<Case> cases = {{stories_prompt(), 0.0, {3, 1, 6, true}, 0},
                             {stories_prompt("The dog ran to the"), 1.0, {4, 1, 8, true}, 0},
                             {{bos}, 1.0, {2, 1, 4, true, /*cost_aware=*/true}, 2},
                             {stories_prompt("Lily saw a big"), 0.0, {1, 1, 1, false}, 3}};
  auto options = [&](const Case& c, uint64_t seed) {
    SpeculativeOptions o;
    o.sampling.temperature = c.temperature;
    o.max_new_tokens = 30 + static_cast<int64_t>(seed);
    o.seed = seed;
    o.gamma = c.gamma;
    o.top_logprobs = 2;
    return o;
  };
  std::vector<SpeculativeDecoder::Result> alone;
  for (size_t i = 0; i < cases.size(); ++i)
    alone.push_back(dec.generate(cases[i].prompt, options(cases[i], i)));

  SpeculativeBatch batch(dec);
  std::map<uint64_t, size_t> case_of;
  std::map<size_t, SpeculativeBatch::Finished> together;
  int checked = 0, max_rows = 0;
  for (int64_t round = 0; together.size() < cases.size(); ++round) {
    for (size_t i = 0; i < cases.size(); ++i)
      if (cases[i].join_round == round)
        case_of[batch.add(cases[i].prompt, options(cases[i], i))] = i;
    for (auto& f : batch.step()) together.emplace(case_of.at(f.id), std::move(f));
    torch::NoGradGuard ng;
    int rows = 0;
    for (auto [id, i] : case_of) {
      if (together.count(i)) continue;
      ++rows;
      const auto& seq = batch.sequence(id);
      const int64_t row = batch.row_of(id);
      const auto& tc = batch.target_cache();
      const auto& dc = batch.draft_cache().at(0);
      const int64_t t_fed = tc.key_mask()[row].sum().item<int64_t>();
      const int64_t d_fed = dc.key_mask()[row].sum().item<int64_t>();
      ASSERT_EQ(t_fed, static_cast<int64_t>(seq.size()) - 1) << "case " << i;
      ASSERT_GE(d_fed, t_fed - 1) << "case " << i;
      auto fresh = target.new_cache();
      auto dfresh = st.drafts->new_cache();
      if (t_fed > 0)
        target.forward(
            torch::tensor(std::vector<int64_t>(seq.begin(), seq.begin() + t_fed)).unsqueeze(0),
            &fresh);
      if (d_fed > 0)
        st.drafts->forward(
            torch::tensor(std::vector<int64_t>(seq.begin(), seq.begin() + d_fed)).unsqueeze(0),
            &dfresh);
      for (int64_t l = 0; l < layers && t_fed > 0; ++l) {
        const auto what = "case " + std::to_string(i) + " layer " + std::to_string(l);
        expect_close(valid_positions(tc.keys(l), tc, row), fresh.keys(l)[0], 1e-5,
                     "target keys, " + what);
        expect_close(valid_positions(tc.values(l), tc, row), fresh.values(l)[0], 1e-5,
                     "target values, " + what);
      }
      for (int64_t l = 0; l < layers && d_fed > 0; ++l)
        for (int64_t m = 0; m < st.drafts->size(); ++m)
          expect_close(valid_positions(dc.keys(l), dc, row, m), dfresh.at(0).keys(l)[m], 1e-5,
                       "draft keys, member " + std::to_string(m) + ", case " + std::to_string(i));
    }
    max_rows = std::max(max_rows, rows);
    checked += rows;
  }
  EXPECT_GE(max_rows, 3) << "the batch never held several sequences";
  EXPECT_GT(checked, 10);
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& a = alone[i];
    const auto& t = together.at(i);
    ASSERT_EQ(t.tokens.size(), a.tokens.size()) << "case " << i;
    EXPECT_EQ(t.finish, a.finish) << "case " << i;
    EXPECT_EQ(t.stats.proposed, a.stats.proposed) << "case " << i;
    EXPECT_EQ(t.stats.accepted, a.stats.accepted) << "case " << i;
    for (size_t j = 0; j < a.tokens.size(); ++j) {
      EXPECT_EQ(t.tokens[j].id, a.tokens[j].id) << "case " << i << " token " << j;
      EXPECT_EQ(t.tokens[j].accepted, a.tokens[j].accepted) << "case " << i << " token " << j;
      EXPECT_TRUE(is_close(t.tokens[j].logprob, a.tokens[j].logprob, kLogProbTol));
      ASSERT_TRUE(t.tokens[j].uncertainty && a.tokens[j].uncertainty);
      EXPECT_TRUE(
          is_close(t.tokens[j].uncertainty->eu_hat, a.tokens[j].uncertainty->eu_hat, kEuTol));
      EXPECT_TRUE(is_close(t.tokens[j].uncertainty->jsd, a.tokens[j].uncertainty->jsd, kEuTol));
      ASSERT_EQ(t.tokens[j].top_logprobs.size(), 2u);
      EXPECT_EQ(t.tokens[j].top_logprobs[0].first, a.tokens[j].top_logprobs[0].first);
    }
  }
  // Rejections were exercised in the batch (else no position was ever masked).
  int64_t proposed = 0, accepted = 0;
  for (auto& [i, f] : together) proposed += f.stats.proposed, accepted += f.stats.accepted;
  EXPECT_LT(accepted, proposed);
}

// With the p_mix adapter as the reference, the output is still the plain target's, and the bias
// is KL(q_mix || target + adapter).
TEST(Speculative, ReferenceAdapterKeepsOutputAndChangesReference) {
  auto& st = stories();
  auto& target = *st.target.model;
  torch::manual_seed(3);
  LoraAdapter adapter(target, LoraConfig{});
  {
    torch::NoGradGuard ng;
    for (auto& [name, layer] : adapter->layers()) layer->lora_B.normal_(0.0, 0.2);
  }
  SpeculativeDecoder dec(st.target.model, st.drafts, adapter->to_member());
  SpeculativeOptions o;
  o.sampling.temperature = 0;
  o.max_new_tokens = 24;
  auto prompt = stories_prompt();
  auto r = dec.generate(prompt, o);
  GenerateOptions go;
  go.sampling.temperature = 0;
  go.max_new_tokens = 24;
  auto plain = generate(target, prompt, go);
  ASSERT_EQ(r.tokens.size(), plain.size());
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_EQ(r.tokens[i].id, plain[i].id) << i;

  torch::NoGradGuard ng;
  std::vector<int64_t> text = prompt;
  for (const auto& t : r.tokens) text.push_back(t.id);
  auto ids = torch::tensor(text).unsqueeze(0);
  const auto L = static_cast<int64_t>(prompt.size()), T = static_cast<int64_t>(r.tokens.size());
  adapter->attach(target);
  auto ref = torch::log_softmax(target.forward(ids)[0].narrow(0, L - 1, T), -1);
  adapter->detach();
  auto dlog = torch::log_softmax(st.drafts->forward(ids).select(1, 0).narrow(1, L - 1, T), -1);
  auto bias = uncertainty::bias_term(dlog, ref);
  for (int64_t i = 0; i < T; ++i)
    EXPECT_TRUE(is_close(r.tokens[static_cast<size_t>(i)].uncertainty->bias, bias[i].item<double>(),
                         kEuTol));
}

TEST(Speculative, UncertaintyStopAndFlags) {
  auto& st = stories();
  SpeculativeDecoder dec(st.target.model, st.drafts);
  SpeculativeOptions o;
  o.sampling.temperature = 0;
  o.max_new_tokens = 30;
  o.policy.flag_threshold = 0.0;
  auto r = dec.generate(stories_prompt(), o);
  double sum = 0;
  for (const auto& t : r.tokens) {
    EXPECT_EQ(t.uncertainty->flagged, t.uncertainty->eu_hat > 0.0);
    sum += t.uncertainty->eu_hat;
  }
  // Stop once the running sum passes half of the full run's: fewer tokens, reason "uncertainty".
  o.policy.stop_threshold = sum / 2;
  auto r2 = dec.generate(stories_prompt(), o);
  EXPECT_EQ(r2.finish, FinishReason::Uncertainty);
  EXPECT_LT(r2.tokens.size(), r.tokens.size());
  double partial = 0;
  for (size_t i = 0; i + 1 < r2.tokens.size(); ++i) partial += r2.tokens[i].uncertainty->eu_hat;
  EXPECT_LE(partial, sum / 2);
  EXPECT_GT(partial + r2.tokens.back().uncertainty->eu_hat, sum / 2);
  // Without uncertainty the tokens are the same and carry no record.
  o.uncertainty = false;
  o.policy = {};
  auto r3 = dec.generate(stories_prompt(), o);
  ASSERT_EQ(r3.tokens.size(), r.tokens.size());
  for (size_t i = 0; i < r3.tokens.size(); ++i) {
    EXPECT_EQ(r3.tokens[i].id, r.tokens[i].id);
    EXPECT_FALSE(r3.tokens[i].uncertainty.has_value());
  }
}

TEST(Policy, SummaryFlaggedSpansAndCalibration) {
  auto cal =
      Calibration::from_json({{"feature", "eu_max"}, {"coef", 2.0}, {"intercept", -1.0}}, "test");
  auto s = summarize({0.1, 0.5, 0.6, 0.0, 0.7}, {false, true, true, false, true}, cal);
  EXPECT_NEAR(s.eu_sum, 1.9, 1e-12);
  EXPECT_NEAR(s.eu_mean, 0.38, 1e-12);
  EXPECT_NEAR(s.eu_max, 0.7, 1e-12);
  ASSERT_EQ(s.flagged.size(), 2u);
  EXPECT_EQ(s.flagged[0].begin, 1);
  EXPECT_EQ(s.flagged[0].end, 3);
  EXPECT_NEAR(s.flagged[0].eu_max, 0.6, 1e-12);
  EXPECT_EQ(s.flagged[1].begin, 4);
  ASSERT_TRUE(s.p_error.has_value());
  EXPECT_NEAR(*s.p_error, 1.0 / (1.0 + std::exp(-(2.0 * 0.7 - 1.0))), 1e-12);
  // The file `drafteu experiment` fits: standardised features, several of them.
  auto fitted = Calibration::from_json({{"feature", {"eu_sum", "eu_max"}},
                                        {"coef", {0.5, -0.25}},
                                        {"intercept", 0.1},
                                        {"mean", {1.0, 0.5}},
                                        {"std", {2.0, 0.25}}},
                                       "fitted");
  double z = 0.1 + 0.5 * (1.9 - 1.0) / 2.0 - 0.25 * (0.7 - 0.5) / 0.25;  // by hand
  EXPECT_NEAR(fitted.p_error(1.9, 0.38, 0.7), 1.0 / (1.0 + std::exp(-z)), 1e-12);
  EXPECT_THROW(
      Calibration::from_json({{"feature", "eu_median"}, {"coef", 1}, {"intercept", 0}}, "x"),
      Error);
  EXPECT_THROW(
      Calibration::from_json({{"feature", "eu_sum"}, {"coef", "1"}, {"intercept", 0}}, "x"), Error);
}

// ---------------------------------------------------------------------------------------------
// The HTTP server, in process on an ephemeral loopback port, through a real HTTP client.
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <future>
#include <regex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "distill/data.h"
#include "serve/server.h"

namespace {

using json = nlohmann::json;
const char* kKey = "sekret";
const char* kModel = "stories260K";

struct LiveServer {
  std::unique_ptr<SpeculativeDecoder> decoder;
  std::unique_ptr<Server> server;
  // drafts: stories().drafts unless given; tweak: changes to the test configuration.
  LiveServer(int64_t max_queue, int64_t max_batch, size_t max_body = 1 << 20,
             std::shared_ptr<Family> drafts = nullptr,
             const std::function<void(ServerConfig&)>& tweak = {}) {
    auto& st = stories();
    decoder = std::make_unique<SpeculativeDecoder>(st.target.model, drafts ? drafts : st.drafts);
    ServerConfig c;
    c.port = 0;
    c.api_key = kKey;
    c.model_name = kModel;
    c.max_queue = max_queue;
    c.max_batch = max_batch;
    c.max_body_bytes = max_body;
    c.limits.max_prompt_tokens = 64;
    c.limits.max_tokens_limit = 48;
    c.defaults.stop_ids = st.target.generation.eos_token_ids;
    c.defaults.policy.flag_threshold = 0.01;
    c.calibration = Calibration::from_json(
        {{"feature", "eu_mean"}, {"coef", 10.0}, {"intercept", -2.0}}, "test");
    c.score_limits.max_inputs = 4;
    if (tweak) tweak(c);
    server = std::make_unique<Server>(*decoder, st.target.tokenizer, c);
    server->start();
  }
  httplib::Client client(bool auth = true) const {
    httplib::Client c("127.0.0.1", server->port());
    c.set_read_timeout(60, 0);
    if (auth) c.set_bearer_token_auth(kKey);
    return c;
  }
};

LiveServer& live() {
  static LiveServer s(32, 8, 64 * 1024);
  return s;
}

struct Reply {
  int status = 0;
  json body;
  std::string raw;
};
Reply post_to(LiveServer& server, const std::string& path, const std::string& body,
              bool auth = true) {
  auto c = server.client(auth);
  auto res = c.Post(path.c_str(), body, "application/json");
  Reply r;
  if (!res) {
    ADD_FAILURE() << "no response from " << path << ": " << httplib::to_string(res.error());
    return r;
  }
  r.status = res->status;
  r.raw = res->body;
  r.body = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  return r;
}
Reply post(const std::string& path, const std::string& body, bool auth = true) {
  return post_to(live(), path, body, auth);
}

// The data payloads of a server-sent-event body, in order.
std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    auto end = body.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "event without its blank line";
    if (end == std::string::npos) break;
    auto ev = body.substr(pos, end - pos);
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    out.push_back(ev.substr(6));
    pos = end + 2;
  }
  return out;
}

void expect_error_body(const Reply& r, int status, const std::string& code) {
  EXPECT_EQ(r.status, status) << r.raw;
  ASSERT_TRUE(r.body.is_object()) << r.raw;
  ASSERT_TRUE(r.body.contains("error")) << r.raw;
  const auto& e = r.body["error"];
  for (const char* k : {"message", "type", "param", "code"}) EXPECT_TRUE(e.contains(k)) << k;
  EXPECT_TRUE(e["message"].is_string());
  if (!code.empty()) {
    EXPECT_EQ(e["code"], code) << r.raw;
  }
}

void expect_uncertainty_object(const json& u) {
  ASSERT_TRUE(u.is_object()) << u.dump();
  for (const char* k : {"eu_hat", "jsd", "bias", "entropy"}) EXPECT_TRUE(u[k].is_number()) << k;
  EXPECT_TRUE(u["accepted"].is_boolean());
}

std::string completion_body(const std::string& prompt, int max_tokens, bool stream = false) {
  return json{{"model", kModel},  {"prompt", prompt}, {"max_tokens", max_tokens},
              {"temperature", 0}, {"stream", stream}, {"logprobs", 2}}
      .dump();
}

}  // namespace

TEST(Server, CompletionMatchesGreedyTargetText) {
  auto r = post("/v1/completions", completion_body("Once upon a time", 24));
  ASSERT_EQ(r.status, 200) << r.raw;
  const auto& b = r.body;
  EXPECT_EQ(b["object"], "text_completion");
  EXPECT_EQ(b["model"], kModel);
  const auto& ch = b["choices"][0];
  EXPECT_TRUE(ch["finish_reason"] == "length" || ch["finish_reason"] == "stop");
  const auto n = ch["uncertainty"].size();
  ASSERT_GT(n, 0u);
  EXPECT_EQ(ch["logprobs"]["tokens"].size(), n);
  EXPECT_EQ(ch["logprobs"]["token_logprobs"].size(), n);
  EXPECT_EQ(ch["logprobs"]["top_logprobs"][0].size(), 2u);
  for (const auto& u : ch["uncertainty"]) expect_uncertainty_object(u);
  const auto& s = ch["uncertainty_summary"];
  for (const char* k : {"eu_sum", "eu_mean", "eu_max", "p_error"})
    EXPECT_TRUE(s[k].is_number()) << k;
  EXPECT_TRUE(s["flagged_spans"].is_array());
  EXPECT_EQ(b["usage"]["prompt_tokens"].get<int>() + b["usage"]["completion_tokens"].get<int>(),
            b["usage"]["total_tokens"].get<int>());

  // Independent reference: plain greedy decoding of the target, decoded without special tokens.
  auto& st = stories();
  GenerateOptions go;
  go.sampling.temperature = 0;
  go.max_new_tokens = 24;
  go.stop_ids = st.target.generation.eos_token_ids;
  auto plain = generate(*st.target.model, stories_prompt("Once upon a time"), go);
  std::vector<int32_t> ids;
  for (const auto& t : plain) ids.push_back(static_cast<int32_t>(t.id));
  EXPECT_EQ(ch["text"].get<std::string>(), st.target.tokenizer->decode(ids, true));
}

TEST(Server, ChatAndStreamsHaveOpenAIShapes) {
  json chat = {{"model", kModel},
               {"messages", json::array({{{"role", "user"}, {"content", "Tell a story"}}})},
               {"max_tokens", 16},
               {"temperature", 0},
               {"logprobs", true},
               {"top_logprobs", 1}};
  auto r = post("/v1/chat/completions", chat.dump());
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["object"], "chat.completion");
  const auto& ch = r.body["choices"][0];
  EXPECT_EQ(ch["message"]["role"], "assistant");
  const std::string text = ch["message"]["content"];
  ASSERT_GT(ch["logprobs"]["content"].size(), 0u);
  for (const auto& e : ch["logprobs"]["content"]) {
    EXPECT_TRUE(e["token"].is_string());
    EXPECT_TRUE(e["logprob"].is_number());
    EXPECT_EQ(e["top_logprobs"].size(), 1u);
    expect_uncertainty_object(e["uncertainty"]);
  }

  chat["stream"] = true;
  auto s = post("/v1/chat/completions", chat.dump());
  ASSERT_EQ(s.status, 200);
  auto events = sse_events(s.raw);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string streamed;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    auto j = json::parse(events[i]);
    EXPECT_EQ(j["object"], "chat.completion.chunk");
    const auto& c = j["choices"][0];
    if (i == 0) {
      EXPECT_EQ(c["delta"]["role"], "assistant");
    }
    if (c["delta"].contains("content")) streamed += c["delta"]["content"].get<std::string>();
    if (i > 0 && i + 2 < events.size()) {
      EXPECT_TRUE(c["finish_reason"].is_null());
      expect_uncertainty_object(c["logprobs"]["content"][0]["uncertainty"]);
    }
    if (i + 2 == events.size()) {
      EXPECT_TRUE(c["finish_reason"].is_string());
      EXPECT_TRUE(c["uncertainty_summary"]["eu_sum"].is_number());
    }
  }
  EXPECT_EQ(streamed, text);

  auto cs = post("/v1/completions", completion_body("The cat", 16, true));
  ASSERT_EQ(cs.status, 200);
  auto cev = sse_events(cs.raw);
  ASSERT_GE(cev.size(), 2u);
  EXPECT_EQ(cev.back(), "[DONE]");
  std::string ctext;
  for (size_t i = 0; i + 1 < cev.size(); ++i) {
    auto j = json::parse(cev[i]);
    EXPECT_EQ(j["object"], "text_completion");
    ctext += j["choices"][0]["text"].get<std::string>();
  }
  auto plain = post("/v1/completions", completion_body("The cat", 16));
  EXPECT_EQ(ctext, plain.body["choices"][0]["text"].get<std::string>());
}

TEST(Server, ErrorsAreOpenAIStyle4xx) {
  expect_error_body(post("/v1/completions", "{\"model\": "), 400, "invalid_json");
  expect_error_body(post("/v1/completions", "[1, 2]"), 400, "invalid_type");
  expect_error_body(post("/v1/completions",
                         json{{"model", kModel}, {"prompt", "x"}, {"max_tokens", "ten"}}.dump()),
                    400, "invalid_type");
  expect_error_body(post("/v1/completions", json{{"model", kModel}, {"prompt", 5}}.dump()), 400,
                    "invalid_type");
  expect_error_body(
      post("/v1/completions", json{{"model", kModel}, {"prompt", "x"}, {"temperature", 9}}.dump()),
      400, "invalid_value");
  expect_error_body(post("/v1/completions", json{{"model", "gpt-9"}, {"prompt", "x"}}.dump()), 404,
                    "model_not_found");
  expect_error_body(
      post("/v1/completions", json{{"model", kModel}, {"prompt", "x"}, {"n", 2}}.dump()), 400,
      "unsupported_value");
  expect_error_body(post("/v1/completions",
                         json{{"model", kModel}, {"prompt", "x"}, {"max_tokens", 4096}}.dump()),
                    400, "max_tokens_exceeded");
  std::string long_prompt;
  for (int i = 0; i < 200; ++i) long_prompt += "Once upon a time ";
  expect_error_body(
      post("/v1/completions", json{{"model", kModel}, {"prompt", long_prompt}}.dump()), 400,
      "context_length_exceeded");
  expect_error_body(
      post("/v1/chat/completions", json{{"model", kModel}, {"messages", "hi"}}.dump()), 400,
      "invalid_type");
  expect_error_body(post("/v1/completions", completion_body("x", 4), /*auth=*/false), 401,
                    "invalid_api_key");
  expect_error_body(post("/v1/nothing", "{}"), 404, "not_found");
  expect_error_body(post("/v1/completions", std::string(100 * 1024, ' ')), 413,
                    "payload_too_large");
  // Still serving after all that.
  EXPECT_EQ(post("/v1/completions", completion_body("x", 2)).status, 200);
}

TEST(Server, ConcurrentClientsMatchSequentialResults) {
  const int n = 16;
  std::vector<std::string> bodies;
  const char* prompts[] = {"Once upon a time", "The dog", "Lily saw", "Tom was happy"};
  for (int i = 0; i < n; ++i) bodies.push_back(completion_body(prompts[i % 4], 6 + i));
  std::vector<json> sequential;
  for (const auto& b : bodies) {
    auto r = post("/v1/completions", b);
    ASSERT_EQ(r.status, 200) << r.raw;
    sequential.push_back(r.body);
  }
  std::vector<std::future<Reply>> futures;
  for (const auto& b : bodies)
    futures.push_back(std::async(std::launch::async, [b] { return post("/v1/completions", b); }));
  for (int i = 0; i < n; ++i) {
    auto r = futures[static_cast<size_t>(i)].get();
    ASSERT_EQ(r.status, 200) << r.raw;
    const auto& a = r.body["choices"][0];
    const auto& e = sequential[static_cast<size_t>(i)]["choices"][0];
    EXPECT_EQ(a["text"], e["text"]) << "request " << i;
    EXPECT_EQ(a["logprobs"]["tokens"], e["logprobs"]["tokens"]) << "request " << i;
    ASSERT_EQ(a["uncertainty"].size(), e["uncertainty"].size());
    for (size_t k = 0; k < a["uncertainty"].size(); ++k)
      EXPECT_TRUE(is_close(a["uncertainty"][k]["eu_hat"].get<double>(),
                           e["uncertainty"][k]["eu_hat"].get<double>(), kEuTol));
  }
  // They were decoded together: some rounds held several requests.
  auto met = live().client().Get("/metrics");
  ASSERT_TRUE(met);
  std::smatch sum, count;
  ASSERT_TRUE(std::regex_search(met->body, sum, std::regex("drafteu_batch_rows_sum ([0-9.e+]+)")));
  ASSERT_TRUE(
      std::regex_search(met->body, count, std::regex("drafteu_batch_rows_count ([0-9.e+]+)")));
  EXPECT_GT(std::stod(sum[1]), std::stod(count[1])) << "no round decoded two requests together";
}

TEST(Server, QueueFullIs429AndHealthModelsMetrics) {
  LiveServer small(1, 1);  // one request decodes, one waits
  std::vector<std::future<int>> futures;
  for (int i = 0; i < 6; ++i)
    futures.push_back(std::async(std::launch::async, [&small] {
      auto c = small.client();
      auto res =
          c.Post("/v1/completions", completion_body("Once upon a time", 48), "application/json");
      return res ? res->status : -1;
    }));
  int ok = 0, busy = 0;
  for (auto& f : futures) {
    int s = f.get();
    ok += s == 200;
    busy += s == 429;
  }
  EXPECT_EQ(ok + busy, 6);
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1);

  auto c = small.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  EXPECT_EQ(json::parse(m->body)["data"][0]["id"], kModel);
  auto met = c.Get("/metrics");
  ASSERT_TRUE(met);
  for (const char* k :
       {"drafteu_requests_total{route=\"/v1/completions\",status=\"429\"}",
        "drafteu_tokens_generated_total", "drafteu_acceptance_rate",
        "drafteu_token_eu_hat_bucket{le=\"+Inf\"}", "drafteu_request_latency_seconds_count"})
    EXPECT_NE(met->body.find(k), std::string::npos) << k;
  small.server->stop();
}

// ---------------------------------------------------------------------------------------------
// The CLI: `generate --drafts` keeps the plain greedy tokens and adds uncertainty; `serve` runs as
// a subprocess, answers, and shuts down on SIGTERM.
// `generate --json` outputs: the same token ids line by line, each speculative token with its
// uncertainty object.
void expect_same_tokens_with_uncertainty(const std::string& plain, const std::string& spec) {
  std::istringstream a(plain), b(spec);
  std::string la, lb;
  int lines = 0;
  while (std::getline(a, la)) {
    ASSERT_TRUE(std::getline(b, lb));
    auto ja = json::parse(la), jb = json::parse(lb);
    EXPECT_EQ(ja["id"], jb["id"]);
    expect_uncertainty_object(jb["uncertainty"]);
    ++lines;
  }
  EXPECT_GT(lines, 0);
}

TEST(Cli, GenerateWithDraftsAddsUncertainty) {
  const std::string model = test::stories260k_gguf().string();
  const std::string base = test::drafteu_bin() + " generate --model " + model +
                           " --prompt 'Once upon a time' --max-tokens 16 --temperature 0 --json";
  auto plain = test::run_command(base);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  auto spec = test::run_command(base + " --draft " + model +
                                " --draft-noise 2 --draft-sigma 0.05 --uncertainty --gamma 3");
  ASSERT_EQ(spec.exit_code, 0) << spec.err;
  expect_same_tokens_with_uncertainty(plain.out, spec.out);
  EXPECT_NE(spec.err.find("acceptance"), std::string::npos) << spec.err;
  auto cost_aware = test::run_command(base + " --draft " + model +
                                      " --draft-noise 2 --uncertainty --gamma-schedule cost-aware");
  ASSERT_EQ(cost_aware.exit_code, 0) << cost_aware.err;
  expect_same_tokens_with_uncertainty(plain.out, cost_aware.out);
  auto bad = test::run_command(base + " --draft " + model + " --gamma-schedule greedy");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--gamma-schedule"), std::string::npos) << bad.err;
}

// The user's path from training to decoding: `train-drafts` writes a family directory, and
// `generate --draft BASE --draft-family DIR` decodes with it: greedy output equal to the
// target's alone, an uncertainty record on every token.
TEST(Cli, TrainedDraftFamilyDirectoryDrivesSpeculativeDecoding) {
  const std::string model = test::stories260k_gguf().string();
  const auto dir = test::scratch_dir("serve_draft_family");
  {
    std::ofstream f(dir / "data.jsonl");
    torch::manual_seed(7);
    for (int64_t p = 0; p < 8; ++p) {
      distill::Sample s;
      s.prompt_index = p;
      auto ids = torch::randint(3, 512, {12}, torch::kInt64);
      s.prompt_ids = {1, ids[0].item<int64_t>()};
      for (int64_t i = 1; i < 12; ++i) s.response_ids.push_back(ids[i].item<int64_t>());
      f << distill::sample_to_json(s).dump() << "\n";
    }
  }
  const std::string family = (dir / "ddd").string();
  auto train = test::run_command(
      test::drafteu_bin() + " --threads 1 train-drafts --quiet --target " + model +
      " --set draft=" + model + " --strategy ddd --splits 2 --per-split 2 --max-steps 2 --data " +
      (dir / "data.jsonl").string() + " --out " + family);
  ASSERT_EQ(train.exit_code, 0) << train.err;
  const std::string base = test::drafteu_bin() + " generate --model " + model +
                           " --prompt 'Once upon a time' --max-tokens 16 --temperature 0 --json";
  auto plain = test::run_command(base);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  auto spec = test::run_command(base + " --draft " + model + " --draft-family " + family +
                                " --uncertainty --gamma 3");
  ASSERT_EQ(spec.exit_code, 0) << spec.err;
  EXPECT_NE(spec.err.find("4 trained drafts"), std::string::npos) << spec.err;
  expect_same_tokens_with_uncertainty(plain.out, spec.out);
  // §4.4's member groups: EU over 2 mixtures of the drafts that learnt member 0 and member 1.
  // Groups of equal size leave q_mix, hence the bias term, unchanged; by KL's convexity the
  // groups' EU_hat is at most the drafts'.
  auto grouped = test::run_command(base + " --draft " + model + " --draft-family " + family +
                                   " --draft-groups member --uncertainty --gamma 3");
  ASSERT_EQ(grouped.exit_code, 0) << grouped.err;
  EXPECT_NE(grouped.err.find("as 2 member groups"), std::string::npos) << grouped.err;
  expect_same_tokens_with_uncertainty(plain.out, grouped.out);
  {
    std::istringstream a(spec.out), g(grouped.out);
    int compared = 0;
    for (std::string la, lg; std::getline(a, la) && std::getline(g, lg); ++compared) {
      const auto ua = json::parse(la)["uncertainty"], ug = json::parse(lg)["uncertainty"];
      const double ba = ua["bias"].get<double>(), bg = ug["bias"].get<double>();
      EXPECT_NEAR(bg, ba, 1e-6 + 1e-3 * std::abs(ba)) << "token " << compared;
      EXPECT_LE(ug["eu_hat"].get<double>(), ua["eu_hat"].get<double>() * (1 + 1e-3) + 1e-7)
          << "token " << compared;
    }
    EXPECT_GT(compared, 0);
  }
  auto groups_alone = test::run_command(base + " --draft " + model +
                                        " --draft-noise 2 --draft-groups member --uncertainty");
  EXPECT_NE(groups_alone.exit_code, 0);
  EXPECT_NE(groups_alone.err.find("--draft-groups member needs --draft-family"), std::string::npos)
      << groups_alone.err;
  auto groups_bad = test::run_command(base + " --draft " + model + " --draft-family " + family +
                                      " --draft-groups pairs --uncertainty");
  EXPECT_NE(groups_bad.exit_code, 0);
  EXPECT_NE(groups_bad.err.find("--draft-groups must be 'none' or 'member'"), std::string::npos)
      << groups_bad.err;
  auto no_base = test::run_command(base + " --draft-family " + family);
  EXPECT_NE(no_base.exit_code, 0);
  EXPECT_NE(no_base.err.find("--draft-family needs --draft"), std::string::npos) << no_base.err;
  auto empty = test::run_command(base + " --draft " + model + " --draft-family " + dir.string());
  EXPECT_NE(empty.exit_code, 0);
  EXPECT_NE(empty.err.find("holds no draft"), std::string::npos) << empty.err;
}

TEST(Cli, ServeSubprocessAnswersAndStopsOnSigterm) {
  auto dir = test::scratch_dir("serve_cli");
  const std::string model = test::stories260k_gguf().string();
  auto started = test::run_command(
      test::drafteu_bin() + " --threads 1 serve --model " + model + " --draft " + model +
      " --draft-noise 2 --max-tokens-limit 480 --port 0 >" + (dir / "out.txt").string() + " 2>" +
      (dir / "err.txt").string() + " & echo $!");
  const int pid = std::stoi(started.out);
  int port = 0;
  for (int i = 0; i < 200 && !port; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::ifstream in(dir / "out.txt");
    std::string s((std::istreambuf_iterator<char>(in)), {});
    std::smatch m;
    if (std::regex_search(s, m, std::regex("listening on http://127\\.0\\.0\\.1:(\\d+)")))
      port = std::stoi(m[1]);
  }
  ASSERT_GT(port, 0) << "server did not start";
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  json req = {{"model", "stories260K"}, {"prompt", "Once"}, {"max_tokens", 8}, {"temperature", 0}};
  auto res = c.Post("/v1/completions", req.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  // SIGTERM drains: a request in flight when the signal comes is answered in full.
  req["max_tokens"] = 480;
  auto in_flight = std::async(std::launch::async, [&] {
    httplib::Client c2("127.0.0.1", port);
    c2.set_read_timeout(60, 0);
    auto r = c2.Post("/v1/completions", req.dump(), "application/json");
    return r ? json::parse(r->body, nullptr, false) : json();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  ::kill(pid, SIGTERM);
  auto drained = in_flight.get();
  ASSERT_TRUE(drained.is_object()) << "the request in flight got no answer";
  EXPECT_TRUE(drained.contains("choices")) << drained.dump();
  EXPECT_GT(drained["usage"]["completion_tokens"].get<int>(), 8);
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    // Reparented to a reaper-less init it may linger as a zombie: that has exited too.
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    gone = ::kill(pid, 0) != 0 || line.find(") Z") != std::string::npos;
  }
  EXPECT_TRUE(gone) << "server still running after SIGTERM";
  std::ifstream err(dir / "err.txt");
  std::string e((std::istreambuf_iterator<char>(err)), {});
  EXPECT_NE(e.find("shutting down"), std::string::npos) << e;
}

// ---------------------------------------------------------------------------------------------
// POST /v1/score against `drafteu score` (the CLI, a separate process) on the same text and the
// same drafts; per-request speculative metrics against the tokens' own accept flags; /metrics
// through Prometheus' own parser (promtool).
namespace {

// The drafts `drafteu score --draft M --draft-noise 3 --draft-sigma 0.05 --draft-seed 1` builds.
std::shared_ptr<Family> cli_score_drafts() {
  auto& st = stories();
  NoiseConfig cfg = NoiseConfig::target_family(1);
  cfg.sigma = 0.05;
  cfg.rank = 8;
  NoiseSampler sampler(*st.target.model, cfg);
  return std::make_shared<LowRankFamily>(st.target.model, sampler.members(3));
}

LiveServer& scoring_server() {
  static LiveServer s(8, 4, 1 << 20, cli_score_drafts());
  return s;
}

double num_field(const json& j, const char* key) {
  EXPECT_TRUE(j.contains(key) && j[key].is_number()) << key << " in " << j.dump();
  return j.value(key, std::nan(""));
}

}  // namespace

TEST(Score, AgreesWithCliScorePerToken) {
  const std::vector<std::pair<std::string, std::string>> texts = {
      {"Once upon a time", " there was a little girl named Lily. She liked to play outside."},
      {"The dog", " ran to the park and saw a big red ball."},
      {"Tom was happy", " because his mom gave him a cake."}};
  const auto dir = test::scratch_dir("serve_score");
  {
    std::ofstream f(dir / "in.jsonl");
    for (const auto& [p, c] : texts) f << json{{"prompt", p}, {"response", c}}.dump() << "\n";
  }
  const std::string model = test::stories260k_gguf().string();
  // Same thread count as this process: the same float32 reductions.
  auto cli = test::run_command(
      test::drafteu_bin() + " --threads " + std::to_string(torch::get_num_threads()) +
      " score --input " + (dir / "in.jsonl").string() + " --output " +
      (dir / "out.jsonl").string() + " --draft " + model +
      " --draft-noise 3 --draft-sigma 0.05 --draft-seed 1 --reference " + model);
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  std::vector<std::vector<json>> expected(texts.size());
  {
    std::ifstream in(dir / "out.jsonl");
    for (std::string line; std::getline(in, line);) {
      auto j = json::parse(line);
      expected.at(j["record"].get<size_t>()).push_back(j);
    }
  }

  json batch = json::array();
  for (const auto& [p, c] : texts)
    batch.push_back({{"model", kModel}, {"prompt", p}, {"completion", c}});
  const auto t0 = std::chrono::steady_clock::now();
  auto r = post_to(scoring_server(), "/v1/score", batch.dump());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["object"], "score");
  EXPECT_EQ(r.body["model"], kModel);
  ASSERT_EQ(r.body["data"].size(), texts.size());
  size_t tokens = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto& d = r.body["data"][i];
    EXPECT_EQ(d["index"], i);
    const auto& got = d["tokens"];
    ASSERT_EQ(got.size(), expected[i].size()) << "input " << i;
    ASSERT_GT(got.size(), 5u);
    tokens += got.size();
    std::vector<double> eu;
    for (size_t k = 0; k < got.size(); ++k) {
      const auto& g = got[k];
      const auto& e = expected[i][k];
      EXPECT_EQ(g["id"], e["id"]) << i << ":" << k;
      EXPECT_EQ(g["token"], e["text"]) << i << ":" << k;
      for (auto [mine, theirs] :
           {std::pair{"eu_hat", "eu_hat"}, std::pair{"jsd", "jsd"}, std::pair{"bias", "bias"},
            std::pair{"entropy", "entropy_target"}, std::pair{"logprob", "logprob"}}) {
        const double a = num_field(g, mine), b = num_field(e, theirs);
        EXPECT_LE(std::abs(a - b), 1e-6 * std::max(1.0, std::abs(b)))
            << mine << " " << i << ":" << k;
      }
      EXPECT_EQ(g["flagged"], g["eu_hat"].get<double>() > 0.01);  // the server's --eu-flag
      eu.push_back(g["eu_hat"].get<double>());
    }
    // The summary by hand, p_error from the test calibration sigmoid(10 eu_mean - 2).
    const auto& s = d["summary"];
    double sum = 0, mx = 0;
    for (double e : eu) sum += e, mx = std::max(mx, e);
    EXPECT_NEAR(num_field(s, "eu_sum"), sum, 1e-9 * std::max(1.0, sum));
    EXPECT_NEAR(num_field(s, "eu_max"), mx, 1e-12);
    const double mean = sum / static_cast<double>(eu.size());
    EXPECT_NEAR(num_field(s, "p_error"), 1.0 / (1.0 + std::exp(-(10 * mean - 2))), 1e-9);
  }
  std::cout << "[score] " << tokens << " tokens over HTTP in " << seconds << " s ("
            << static_cast<double>(tokens) / seconds << " tokens/s)\n";

  // A single object is a batch of one; chat messages are a prompt too.
  auto one = post_to(scoring_server(), "/v1/score", batch[1].dump());
  ASSERT_EQ(one.status, 200) << one.raw;
  ASSERT_EQ(one.body["data"].size(), 1u);
  EXPECT_EQ(one.body["data"][0]["tokens"], r.body["data"][1]["tokens"]);
  auto chat = post_to(scoring_server(), "/v1/score",
                      json{{"model", kModel},
                           {"messages", json::array({{{"role", "user"}, {"content", "Hi"}}})},
                           {"completion", " Hello there."}}
                          .dump());
  EXPECT_EQ(chat.status, 200) << chat.raw;
}

TEST(Score, LimitsAndErrorsAreOpenAIStyle4xx) {
  auto& srv = scoring_server();
  auto item = [](const std::string& completion) {
    return json{{"model", kModel}, {"prompt", "Once"}, {"completion", completion}};
  };
  expect_error_body(post_to(srv, "/v1/score", json{{"model", kModel}, {"prompt", "x"}}.dump()), 400,
                    "missing_required_parameter");
  expect_error_body(post_to(srv, "/v1/score", item("").dump()), 400, "invalid_value");
  expect_error_body(post_to(srv, "/v1/score", "[]"), 400, "invalid_value");
  json five = json::array();
  for (int i = 0; i < 5; ++i) five.push_back(item(" a cat"));
  expect_error_body(post_to(srv, "/v1/score", five.dump()), 400, "too_many_inputs");
  json mixed = json::array({item(" a cat"), json{{"model", kModel}, {"completion", " x"}}});
  auto m = post_to(srv, "/v1/score", mixed.dump());
  expect_error_body(m, 400, "missing_required_parameter");
  EXPECT_NE(m.body["error"]["message"].get<std::string>().find("input 1"), std::string::npos);
  // A completion over the context (and this server's 2048-token score limit).
  std::string long_text;
  for (int i = 0; i < 700; ++i) long_text += " once upon a time";
  auto ctx = post_to(srv, "/v1/score", item(long_text).dump());
  expect_error_body(ctx, 400, "context_length_exceeded");
  EXPECT_EQ(ctx.body["error"]["param"], "completion") << ctx.raw;
  EXPECT_NE(ctx.raw.find("2048"), std::string::npos) << ctx.raw;
  expect_error_body(post_to(srv, "/v1/score", item(" x").dump(), /*auth=*/false), 401,
                    "invalid_api_key");
  expect_error_body(post_to(srv, "/v1/score",
                            json{{"model", "gpt-9"}, {"prompt", "x"}, {"completion", " y"}}.dump()),
                    404, "model_not_found");
  EXPECT_EQ(post_to(srv, "/v1/score", item(" a cat").dump()).status, 200);
}

// Every round emits its accepted proposals (accepted: true) then the target's own token
// (accepted: false): the per-round arrays must reproduce the tokens' flags, and the summaries
// must be the hand counts over those arrays.
TEST(Server, SpeculativeMetricsMatchAcceptFlags) {
  json req = json::parse(completion_body("Once upon a time", 40));
  req["speculative_detailed"] = true;
  auto r = post("/v1/completions", req.dump());
  ASSERT_EQ(r.status, 200) << r.raw;
  const auto& spec = r.body["speculative"];
  std::vector<bool> flags;
  for (const auto& u : r.body["choices"][0]["uncertainty"]) flags.push_back(u["accepted"]);
  const auto gammas = spec["detailed"]["gamma"].get<std::vector<int64_t>>();
  const auto accepted = spec["detailed"]["accepted"].get<std::vector<int64_t>>();
  ASSERT_EQ(gammas.size(), accepted.size());
  ASSERT_GT(gammas.size(), 2u);
  size_t pos = 0;
  int64_t sum_g = 0, sum_a = 0, width = 0;
  for (size_t i = 0; i < gammas.size(); ++i) {
    const bool last = i + 1 == gammas.size();
    ASSERT_LE(accepted[i], gammas[i]);
    for (int64_t k = 0; k <= accepted[i]; ++k) {
      if (last && pos == flags.size()) break;  // the end of text may cut the last round
      ASSERT_LT(pos, flags.size()) << "round " << i;
      EXPECT_EQ(flags[pos], k < accepted[i]) << "round " << i << " token " << pos;
      ++pos;
    }
    sum_g += gammas[i], sum_a += accepted[i], width = std::max(width, gammas[i]);
  }
  EXPECT_EQ(pos, flags.size());
  EXPECT_GT(sum_a, 0);
  EXPECT_LT(sum_a, sum_g) << "no rejection: the check above did not see a resampled token";
  std::vector<int64_t> acc_at(static_cast<size_t>(width), 0), prop_at(acc_at);
  for (size_t i = 0; i < gammas.size(); ++i) {
    for (int64_t k = 0; k < gammas[i]; ++k) ++prop_at[static_cast<size_t>(k)];
    for (int64_t k = 0; k < accepted[i]; ++k) ++acc_at[static_cast<size_t>(k)];
  }
  EXPECT_EQ(spec["accepted_per_position"].get<std::vector<int64_t>>(), acc_at);
  EXPECT_EQ(spec["proposed_per_position"].get<std::vector<int64_t>>(), prop_at);
  const double rounds = static_cast<double>(gammas.size());
  EXPECT_DOUBLE_EQ(spec["draft_acceptance_rate"].get<double>(),
                   static_cast<double>(sum_a) / static_cast<double>(sum_g));
  EXPECT_DOUBLE_EQ(spec["mean_accepted_length"].get<double>(),
                   1.0 + static_cast<double>(sum_a) / rounds);
  EXPECT_DOUBLE_EQ(spec["gamma"].get<double>(), static_cast<double>(sum_g) / rounds);
  EXPECT_EQ(spec["gamma_schedule"], "heuristic");
  EXPECT_EQ(spec["rounds"], gammas.size());

  // Without the request flag: no per-round arrays; chats and stream ends carry the same object.
  auto plain = post("/v1/completions", completion_body("Once upon a time", 40));
  EXPECT_FALSE(plain.body["speculative"].contains("detailed"));
  EXPECT_EQ(plain.body["speculative"]["accepted_per_position"], spec["accepted_per_position"]);
  json chat = {
      {"model", kModel},  {"messages", json::array({{{"role", "user"}, {"content", "Hi"}}})},
      {"max_tokens", 12}, {"temperature", 0},
      {"stream", true},   {"speculative_detailed", true}};
  auto s = post("/v1/chat/completions", chat.dump());
  auto events = sse_events(s.raw);
  ASSERT_GE(events.size(), 2u);
  auto last = json::parse(events[events.size() - 2]);
  for (const char* k : {"draft_acceptance_rate", "mean_accepted_length", "accepted_per_position",
                        "gamma", "detailed"})
    EXPECT_TRUE(last["speculative"].contains(k)) << k;
}

TEST(Server, MetricsParseWithPromtoolAndCountUncertainty) {
  // Stops (abstains) once the running eu_sum passes 0.05 nats; flags tokens above 0.01.
  LiveServer srv(8, 2, 1 << 20, nullptr, [](ServerConfig& c) {
    c.defaults.policy.stop_threshold = 0.05;
    c.defaults.policy.stop_min_tokens = 1;
  });
  int abstained = 0, flagged = 0, done = 0;
  std::vector<int64_t> acc_at;
  for (const char* p : {"Once upon a time", "The dog", "Lily saw"}) {
    auto r = post_to(srv, "/v1/completions", completion_body(p, 40));
    ASSERT_EQ(r.status, 200) << r.raw;
    ++done;
    const auto& ch = r.body["choices"][0];
    abstained += ch["finish_reason"] == "uncertainty";
    flagged += !ch["uncertainty_summary"]["flagged_spans"].empty();
    auto a = r.body["speculative"]["accepted_per_position"].get<std::vector<int64_t>>();
    if (acc_at.size() < a.size()) acc_at.resize(a.size(), 0);
    for (size_t i = 0; i < a.size(); ++i) acc_at[i] += a[i];
  }
  ASSERT_GT(abstained, 0) << "the stop policy never fired: the counter test would be vacuous";
  ASSERT_EQ(
      post_to(srv, "/v1/score",
              json{{"model", kModel}, {"prompt", "Once"}, {"completion", " a cat sat"}}.dump())
          .status,
      200);
  auto met = srv.client().Get("/metrics");
  ASSERT_TRUE(met);
  const std::string& text = met->body;
  auto value = [&](const std::string& series) {
    auto at = text.find("\n" + series + " ");
    EXPECT_NE(at, std::string::npos) << series;
    return at == std::string::npos ? -1.0 : std::stod(text.substr(at + series.size() + 2));
  };
  EXPECT_EQ(value("drafteu_requests_abstained_total"), abstained);
  EXPECT_EQ(value("drafteu_requests_flagged_total"), flagged);
  EXPECT_EQ(value("drafteu_sequence_eu_count"), done);
  EXPECT_EQ(value("drafteu_queue_wait_seconds_count"), done + 1);  // the score request too
  EXPECT_GT(value("drafteu_tokens_scored_total"), 0);
  for (size_t i = 0; i < acc_at.size(); ++i)
    EXPECT_EQ(
        value("drafteu_draft_position_accepted_total{position=\"" + std::to_string(i) + "\"}"),
        acc_at[i])
        << i;
  srv.server->stop();

  // Prometheus' own parser and linter (Debian: apt-get install prometheus).
  const auto dir = test::scratch_dir("serve_metrics");
  {
    std::ofstream f(dir / "metrics.txt");
    f << text;
  }
  auto which = test::run_command("command -v promtool");
  ASSERT_EQ(which.exit_code, 0)
      << "promtool is missing: install Debian's prometheus package (tools/setup.sh)";
  auto check = test::run_command("promtool check metrics < " + (dir / "metrics.txt").string());
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_EQ(check.out + check.err, "") << "promtool's linter complained";
}

// ---------------------------------------------------------------------------------------------
// The server under abuse: bodies beyond the limit (chunked too), slow-header clients, deep JSON,
// invalid UTF-8, requests beyond the context, clients that go away, the API key comparison.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serve/http_guard.h"

namespace {

// A raw TCP connection: what an HTTP client library will not send.
struct RawConn {
  int fd = -1;
  explicit RawConn(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{2, 0};  // a server that stops reading must not block the test
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  }
  ~RawConn() { close(); }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  bool send_all(const std::string& s) {
    for (size_t off = 0; off < s.size();) {
      auto n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  bool readable(int ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, ms) > 0;
  }
  // What arrives within `ms` (or until the server closes). A pause between two writes does not
  // end it: under load (or ASan) a stream's first event may come well after its headers.
  std::string read_for(int ms) {
    std::string out;
    char buf[4096];
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            end - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0 || !readable(static_cast<int>(left))) break;
      auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
};

std::string request_head(const std::string& path, const std::string& extra) {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + kKey +
         "\r\nContent-Type: application/json\r\n" + extra + "\r\n";
}

double rss_mb() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

double metric(LiveServer& srv, const std::string& series) {
  auto met = srv.client().Get("/metrics");
  EXPECT_TRUE(met);
  if (!met) return -1;
  auto at = met->body.find("\n" + series + " ");
  EXPECT_NE(at, std::string::npos) << series;
  return at == std::string::npos ? -1 : std::stod(met->body.substr(at + series.size() + 2));
}

// Long generations (context 512), one request decoding at a time, a fast heartbeat.
LiveServer& hardened() {
  static LiveServer s(8, 1, 64 * 1024, nullptr, [](ServerConfig& c) {
    c.limits.max_prompt_tokens = 600;
    c.limits.max_tokens_limit = 4000;
    c.heartbeat_ms = 20;
  });
  return s;
}

std::string long_body(bool stream) {
  return json{{"model", kModel},
              {"prompt", "Once upon a time"},
              {"max_tokens", 480},
              {"temperature", 0},
              {"stream", stream}}
      .dump();
}

}  // namespace

TEST(Hardening, BodiesStopAtTheLimitChunkedToo) {
  auto& srv = live();  // 64 KB body limit
  const double rss0 = rss_mb();
  {  // 100 MB chunked: cut at the limit, never buffered.
    RawConn c(srv.server->port());
    ASSERT_TRUE(c.send_all(request_head("/v1/completions", "Transfer-Encoding: chunked\r\n")));
    const std::string chunk = "10000\r\n" + std::string(0x10000, 'a') + "\r\n";
    size_t sent = 0;
    while (sent < (100u << 20) && !c.readable(0) && c.send_all(chunk)) sent += chunk.size();
    EXPECT_LT(sent, 32u << 20) << "the server kept reading a chunked body past its limit";
    const auto reply = c.read_for(2000);
    if (!reply.empty()) {
      EXPECT_NE(reply.find(" 413 "), std::string::npos) << reply.substr(0, 200);
    }
  }
  {  // 100 MB with a Content-Length: 413, the body discarded as it arrives.
    RawConn c(srv.server->port());
    const size_t total = 100u << 20;
    ASSERT_TRUE(c.send_all(
        request_head("/v1/completions", "Content-Length: " + std::to_string(total) + "\r\n")));
    const std::string block(1 << 20, ' ');
    for (size_t sent = 0; sent < total && !c.readable(0) && c.send_all(block);)
      sent += block.size();
    EXPECT_NE(c.read_for(3000).find(" 413 "), std::string::npos);
  }
  EXPECT_LT(rss_mb() - rss0, 50.0) << "100 MB bodies grew the server's memory";
  EXPECT_EQ(post("/v1/completions", completion_body("x", 2)).status, 200);
}

TEST(Hardening, SlowHeaderClientsDoNotStarveHealth) {
  auto& srv = live();
  std::vector<std::unique_ptr<RawConn>> slow;
  for (int i = 0; i < 48; ++i) {  // more than the 32 threads of httplib's default pool
    slow.push_back(std::make_unique<RawConn>(srv.server->port()));
    slow.back()->send_all("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ");  // never finished
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto c = srv.client();
  c.set_read_timeout(3, 0);
  c.set_connection_timeout(3, 0);
  const auto t0 = std::chrono::steady_clock::now();
  auto h = c.Get("/health");
  ASSERT_TRUE(h) << "/health did not answer beside 48 slow-header clients";
  EXPECT_EQ(h->status, 200);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0);
}

TEST(Hardening, DeepJsonInvalidUtf8AndContextLengthAre4xx) {
  auto& srv = hardened();
  const std::string deep = std::string(20000, '[') + std::string(20000, ']');
  expect_error_body(post_to(srv, "/v1/completions", deep), 400, "invalid_json");
  expect_error_body(post_to(srv, "/v1/score", deep), 400, "invalid_json");
  expect_error_body(
      post_to(srv, "/v1/completions", "{\"model\": \"stories260K\", \"prompt\": " + deep + "}"),
      400, "invalid_json");
  expect_error_body(post_to(srv, "/v1/chat/completions",
                            "{\"model\": \"stories260K\", \"messages\": [{\"role\": \"user\", "
                            "\"content\": \"caf\xc3\x28 \xff\"}]}"),
                    400, "invalid_json");
  auto ctx =
      post_to(srv, "/v1/completions",
              json{{"model", kModel}, {"prompt", "Once upon a time"}, {"max_tokens", 2100}}.dump());
  expect_error_body(ctx, 400, "context_length_exceeded");
  EXPECT_NE(ctx.raw.find("maximum context length is 2048"), std::string::npos) << ctx.raw;
  EXPECT_EQ(ctx.body["error"]["param"], "max_tokens");
  expect_error_body(post_to(srv, "/v1/completions",
                            json{{"model", kModel}, {"prompt", "x"}, {"max_tokens", 5000}}.dump()),
                    400, "max_tokens_exceeded");
  expect_error_body(
      post_to(srv, "/v1/completions", json{{"model", kModel}, {"prompt", "x"}, {"n", 64}}.dump()),
      400, "unsupported_value");
  auto h = srv.client().Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

// A client that goes away cancels its request, streaming or not, and frees its batch slot (the
// server decodes one request at a time here).
TEST(Hardening, DisconnectsCancelAndFreeTheSlot) {
  auto& srv = hardened();
  auto full = post_to(srv, "/v1/completions", long_body(false));
  ASSERT_EQ(full.status, 200) << full.raw;
  const int full_tokens = full.body["usage"]["completion_tokens"];
  ASSERT_GE(full_tokens, 200) << "too short to see a cancellation";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(post_to(srv, "/v1/completions", long_body(false)).status, 200);
  const double full_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  for (bool stream : {false, true}) {
    const double before = metric(srv, "drafteu_tokens_generated_total");
    {
      RawConn c(srv.server->port());
      const auto body = long_body(stream);
      ASSERT_TRUE(
          c.send_all(request_head("/v1/completions",
                                  "Content-Length: " + std::to_string(body.size()) + "\r\n") +
                     body));
      if (stream) {
        // The first events: wait for them as long as a loaded machine may need, then stop.
        EXPECT_TRUE(c.readable(10000)) << "no event within 10 s";
        const auto got = c.read_for(static_cast<int>(full_s * 200));
        EXPECT_NE(got.find("data: "), std::string::npos) << got;
      } else {
        std::this_thread::sleep_for(std::chrono::duration<double>(full_s / 5));
      }
    }  // closed mid-way
    // The slot is free: a short request is answered long before the abandoned one could end.
    auto quick = post_to(srv, "/v1/completions", completion_body("The dog", 4));
    ASSERT_EQ(quick.status, 200) << quick.raw;
    const double generated = metric(srv, "drafteu_tokens_generated_total") - before;
    EXPECT_LT(generated, full_tokens)
        << (stream ? "stream" : "non-streaming") << " request kept decoding after its client left";
  }
  // A request kept open gets its body after the heartbeat spaces: still one JSON document.
  auto again = post_to(srv, "/v1/completions", long_body(false));
  ASSERT_EQ(again.status, 200);
  EXPECT_EQ(again.body["choices"][0]["text"], full.body["choices"][0]["text"]);
}

TEST(Hardening, ApiKeyComparedWholeInConstantTime) {
  EXPECT_TRUE(constant_time_equal("Bearer sekret", "Bearer sekret"));
  EXPECT_FALSE(constant_time_equal("Bearer sekre", "Bearer sekret"));
  EXPECT_FALSE(constant_time_equal("Bearer sekretX", "Bearer sekret"));
  EXPECT_FALSE(constant_time_equal("", "Bearer sekret"));
  EXPECT_FALSE(constant_time_equal(std::string("Bearer sekret\0", 14), "Bearer sekret"));
  EXPECT_FALSE(constant_time_equal("Bearer sekreu", "Bearer sekret"));
  for (const char* key : {"sekre", "sekretX", "SEKRET"}) {
    httplib::Client c("127.0.0.1", live().server->port());
    c.set_bearer_token_auth(key);
    auto res = c.Post("/v1/completions", completion_body("x", 2), "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401) << key;
  }
}

// examples/client.py (standard library only) against the live server: the text it prints, with
// the colour codes taken out, is the server's completion, and tokens are coloured.
TEST(Client, PythonExamplePrintsCompletionColouredByEu) {
  const char* tests_dir = std::getenv("DRAFTEU_TESTS_DIR");
  ASSERT_TRUE(tests_dir) << "DRAFTEU_TESTS_DIR is not set (run through ctest)";
  const auto script =
      test::require_file(std::filesystem::path(tests_dir) / ".." / "examples" / "client.py");
  auto run = test::run_command(std::string(test::reference_python()) + " " + script.string() +
                               " --url http://127.0.0.1:" + std::to_string(live().server->port()) +
                               " --api-key " + kKey + " --model " + kModel +
                               " --prompt 'Once upon a time' --max-tokens 24 --color always");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  auto expected = post("/v1/completions", completion_body("Once upon a time", 24));
  ASSERT_EQ(expected.status, 200);
  const std::string text = expected.body["choices"][0]["text"];
  const std::string plain = std::regex_replace(run.out, std::regex("\x1b\\[[0-9;]*m"), "");
  EXPECT_EQ(plain, "Once upon a time" + text + "\n");
  EXPECT_NE(run.out.find("\x1b[3"), std::string::npos) << "no token was coloured";
  EXPECT_NE(run.err.find("eu_sum"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("draft acceptance"), std::string::npos) << run.err;

  auto bad = test::run_command(std::string(test::reference_python()) + " " + script.string() +
                               " --url http://127.0.0.1:" + std::to_string(live().server->port()) +
                               " --api-key wrong --model " + kModel + " --prompt x");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("HTTP 401"), std::string::npos) << bad.err;
}
