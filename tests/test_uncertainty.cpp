// Tests of src/uncertainty/ against independent references only: the identities of Section 3
// (each side computed by a different function), values worked out by hand, a PyTorch reference in
// Debian's python3 using the textbook formulas, and direct constructions.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "test_support.h"
#include "uncertainty/uncertainty.h"
#include "util/error.h"

namespace drafteu::uncertainty {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
const double kLn2 = std::log(2.0);

// --- helpers -----------------------------------------------------------------------------------

// Max of |a - b| / max(1, |b|) (equal infinities count as equal); NaN in either fails.
void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tol,
                  const std::string& what) {
  ASSERT_TRUE(a.defined()) << what << ": left side undefined";
  ASSERT_TRUE(b.defined()) << what << ": right side undefined";
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  auto x = a.to(torch::kFloat64).cpu();
  auto y = b.to(torch::kFloat64).cpu();
  ASSERT_FALSE(x.isnan().any().item<bool>()) << what << ": NaN in left side";
  ASSERT_FALSE(y.isnan().any().item<bool>()) << what << ": NaN in right side";
  if (x.numel() == 0) return;
  auto same_inf = x.isinf().logical_and(x.eq(y));
  ASSERT_TRUE(x.isinf().eq(y.isinf()).all().item<bool>()) << what << ": infinities differ\n"
                                                          << x << "\n"
                                                          << y;
  auto err = ((x - y).abs() / y.abs().clamp_min(1)).masked_fill(same_inf, 0);
  EXPECT_LE(err.max().item<double>(), tol) << what;
}

void expect_all_finite(const torch::Tensor& t, const std::string& what) {
  ASSERT_TRUE(t.defined()) << what;
  EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << what << "\n" << t;
}

template <typename F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected drafteu::Error containing: " << needle;
  } catch (const drafteu::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
}

enum class Kind { Smooth, Zeros, Peaked, OneHot };
const Kind kKinds[] = {Kind::Smooth, Kind::Zeros, Kind::Peaked, Kind::OneHot};
const char* name(Kind k) {
  switch (k) {
    case Kind::Smooth:
      return "smooth";
    case Kind::Zeros:
      return "zeros";
    case Kind::Peaked:
      return "peaked";
    case Kind::OneHot:
      return "one-hot";
  }
  return "?";
}

// float64 logits: Zeros drops ~40% of each row to -inf (exact zeros; the row maximum is kept),
// OneHot drops all but the maximum, Peaked is near one-hot (tails down to ~1e-70).
torch::Tensor random_logits(c10::IntArrayRef shape, Kind kind) {
  auto logits = torch::randn(shape, torch::kFloat64);
  if (kind == Kind::Peaked) logits = logits * 40;
  if (kind == Kind::Zeros || kind == Kind::OneHot) {
    auto drop = torch::rand(shape, torch::kFloat64) < (kind == Kind::Zeros ? 0.4 : 2.0);
    drop = drop.logical_and(logits.ne(std::get<0>(logits.max(-1, true))));
    logits.masked_fill_(drop, -kInf);
  }
  return logits;
}

torch::Tensor random_log_probs(c10::IntArrayRef shape, Kind kind) {
  return torch::log_softmax(random_logits(shape, kind), -1);
}

// A smooth reference [..., V] that is 0 exactly where every member of `family` is 0, so that
// KL(p_k || r) is finite while both sides still contain exact zeros.
torch::Tensor covering_reference(const torch::Tensor& family) {
  auto logits = torch::randn(family.sizes().slice(1), torch::kFloat64);
  logits.masked_fill_(family.exp().eq(0).all(0), -kInf);
  return torch::log_softmax(logits, -1);
}

// float64 log-probabilities of distributions written out by hand, one per row.
torch::Tensor lp(std::vector<std::vector<double>> rows) {
  std::vector<torch::Tensor> ts;
  for (auto& r : rows) ts.push_back(torch::tensor(r, torch::kFloat64));
  return torch::stack(ts).log();
}

// --- Lemma 3.1 ---------------------------------------------------------------------------------

TEST(Uncertainty, Lemma31EpistemicIsTotalMinusAleatoricIsMeanKL) {
  torch::manual_seed(31);
  for (int64_t k : {1, 2, 3, 8}) {
    for (int64_t v : {2, 7, 300}) {
      for (Kind kind : kKinds) {
        const std::string what =
            "K=" + std::to_string(k) + " V=" + std::to_string(v) + " " + name(kind);
        auto family = random_log_probs({k, 5, v}, kind);
        auto split = uncertainty_split(family);
        auto eu = epistemic_uncertainty(family);
        auto mean = log_mixture(family);
        // H(p_bar) and mean H(p_m) from the entropy functions, EU in the KL form.
        expect_close(split.total, entropy(mean), 1e-12, what + " total = H(p_bar)");
        expect_close(split.aleatoric, mean_entropy(family), 1e-12, what + " aleatoric");
        expect_close(split.epistemic, eu, 1e-12, what + " split.epistemic");
        expect_close(entropy(mean) - mean_entropy(family), eu, 1e-9, what + " Lemma 3.1");
        expect_close(mean_kl_divergence(family, mean), eu, 1e-12, what + " mean KL to p_bar");
        EXPECT_GE(eu.min().item<double>(), 0.0) << what;
        EXPECT_LE(eu.max().item<double>(), std::log(static_cast<double>(k)) + 1e-12) << what;
        EXPECT_EQ(eu.dtype(), torch::kFloat64);
        EXPECT_EQ(eu.sizes(), (std::vector<int64_t>{5}));
      }
    }
  }
}

TEST(Uncertainty, OneMemberFamilyHasNoEpistemicUncertainty) {
  torch::manual_seed(1);
  for (Kind kind : kKinds) {
    auto family = random_log_probs({1, 6, 50}, kind);
    EXPECT_LE(epistemic_uncertainty(family).abs().max().item<double>(), 1e-15) << name(kind);
    EXPECT_LE(jsd(family).abs().max().item<double>(), 1e-15) << name(kind);
  }
}

TEST(Uncertainty, JsdOfIdenticalMembersIsZeroAndBoundsHold) {
  torch::manual_seed(2);
  for (Kind kind : kKinds) {
    auto one = random_log_probs({1, 6, 40}, kind);
    EXPECT_LE(jsd(one.expand({5, 6, 40})).max().item<double>(), 1e-14) << name(kind);
    for (int64_t k : {2, 4, 9}) {
      auto drafts = random_log_probs({k, 6, 40}, kind);
      auto d = jsd(drafts);
      EXPECT_GE(d.min().item<double>(), 0.0) << name(kind);
      EXPECT_LE(d.max().item<double>(), std::log(static_cast<double>(k)) + 1e-12) << name(kind);
    }
  }
  // K disjoint one-hot members reach the bound EU = log K.
  auto disjoint = torch::full({4, 4}, -kInf, torch::kFloat64);
  for (int i = 0; i < 4; ++i) disjoint[i][i] = 0.0;
  expect_close(epistemic_uncertainty(disjoint), torch::tensor(std::log(4.0), torch::kFloat64),
               1e-15, "disjoint one-hots");
}

// --- Theorem 3.2 -------------------------------------------------------------------------------

TEST(Uncertainty, Theorem32CompensationIdentity) {
  torch::manual_seed(32);
  for (int64_t m : {1, 2, 3, 8}) {
    for (int64_t v : {2, 7, 300}) {
      for (Kind kind : kKinds) {
        const std::string what =
            "M=" + std::to_string(m) + " V=" + std::to_string(v) + " " + name(kind);
        auto family = random_log_probs({m, 6, v}, kind);
        auto r = covering_reference(family);
        auto eu = epistemic_uncertainty(family);
        auto lhs = mean_kl_divergence(family, r);
        auto gap = kl_divergence(log_mixture(family), r);
        expect_close(lhs, eu + gap, 1e-9, what + " mean KL(p_m||r) = EU + KL(p_bar||r)");
        EXPECT_TRUE((lhs >= eu - 1e-12).all().item<bool>()) << what;
        // Where r differs from p_bar the inequality is strict (Pinsker: KL >= |p_bar - r|_1^2 / 2)
        // ...
        auto differs = (r.exp() - log_mixture(family).exp()).abs().sum(-1) > 1e-3;
        EXPECT_TRUE(gap.masked_select(differs).gt(4e-7).all().item<bool>()) << what;
        // (a one-member one-hot family has r = p_bar by construction of covering_reference)
        if (m > 1 || kind != Kind::OneHot) {
          EXPECT_TRUE(differs.any().item<bool>()) << what;
        }
        // ... and it is an equality at r = p_bar.
        expect_close(mean_kl_divergence(family, log_mixture(family)), eu, 1e-12,
                     what + " equality at r = p_bar");
      }
    }
  }
}

// --- Theorem 3.4 -------------------------------------------------------------------------------

TEST(Uncertainty, Theorem34EstimatorIsJsdPlusBias) {
  torch::manual_seed(34);
  for (int64_t k : {1, 2, 3, 8}) {
    for (int64_t v : {2, 7, 300}) {
      for (Kind kind : kKinds) {
        const std::string what =
            "K=" + std::to_string(k) + " V=" + std::to_string(v) + " " + name(kind);
        auto drafts = random_log_probs({k, 6, v}, kind);
        // Reference: the mean of a target family that covers the drafts' support.
        auto target = torch::stack({covering_reference(drafts), covering_reference(drafts)});
        auto ref = log_mixture(target);
        auto e = draft_estimator(drafts, ref);
        expect_close(e.eu_hat, e.jsd + e.bias, 1e-9, what + " EU_hat = JSD + bias");
        expect_close(e.eu_hat, mean_kl_divergence(drafts, ref), 1e-12, what + " EU_hat def");
        expect_close(e.jsd, jsd(drafts), 1e-12, what + " jsd()");
        expect_close(e.bias, bias_term(drafts, ref), 1e-12, what + " bias_term()");
        expect_close(e.bias, kl_divergence(log_mixture(drafts), ref), 1e-12, what + " bias def");
        // Generalised JSD in its entropy form.
        expect_close(e.jsd, entropy(log_mixture(drafts)) - mean_entropy(drafts), 1e-9,
                     what + " JSD = H(q_mix) - mean H(q_k)");
        expect_all_finite(e.eu_hat, what);
      }
    }
  }
}

// The serving records (sums of q log q, difference form) against the exact reductions: float64
// inputs to 1e-9, float32 inputs at V = 32000 with near-identical drafts to 1e-7 nats, and exact
// zeros (0 log 0) falling back to the exact values.
TEST(Uncertainty, TokenRecordsEqualExactEstimator) {
  torch::manual_seed(35);
  for (Kind kind : kKinds) {
    auto drafts = random_log_probs({3, 5, 40}, kind);
    auto target = covering_reference(drafts);
    auto ref = log_mixture(torch::stack({target, covering_reference(drafts)}));
    auto r = token_records(drafts, ref, target);
    auto e = draft_estimator(drafts, ref);
    expect_close(r.jsd, e.jsd, 1e-9, std::string(name(kind)) + " jsd");
    expect_close(r.bias, e.bias, 1e-9, std::string(name(kind)) + " bias");
    expect_close(r.eu_hat, e.eu_hat, 1e-9, std::string(name(kind)) + " eu_hat");
    expect_close(r.entropy, entropy(target), 1e-9, std::string(name(kind)) + " entropy");
  }
  // float32 at a real vocabulary size, drafts that nearly agree (EU ~1e-4 nats).
  auto base = torch::randn({4, 32000}, torch::kFloat64) * 3;
  auto drafts = torch::log_softmax(base + 0.01 * torch::randn({3, 4, 32000}, torch::kFloat64), -1);
  auto ref = torch::log_softmax(base + 0.01 * torch::randn({4, 32000}, torch::kFloat64), -1);
  auto e = draft_estimator(drafts, ref);
  auto r =
      token_records(drafts.to(torch::kFloat32), ref.to(torch::kFloat32), ref.to(torch::kFloat32));
  EXPECT_LT(e.eu_hat.max().item<double>(), 1e-3);
  expect_close(r.eu_hat, e.eu_hat, 1e-7, "float32 eu_hat");
  expect_close(r.jsd, e.jsd, 1e-7, "float32 jsd");
  expect_close(r.bias, e.bias, 1e-7, "float32 bias");
  expect_close(r.eu_hat, r.jsd + r.bias, 1e-12, "Theorem 3.4 by construction");
  expect_error(
      [] {
        token_records(torch::zeros({3, 4, 5}), torch::zeros({4, 5}), torch::zeros({4, 6}));
      },
      "token_records");
}

TEST(Uncertainty, ReferenceMissingDraftSupportGivesInfiniteBias) {
  // q1 = (0.5, 0.5), q2 = (1, 0), p_ref = (1, 0): the drafts put mass where p_ref is 0.
  auto drafts = lp({{0.5, 0.5}, {1.0, 0.0}});
  auto ref = lp({{1.0, 0.0}})[0];
  auto e = draft_estimator(drafts, ref);
  EXPECT_TRUE(std::isinf(e.bias.item<double>()) && e.bias.item<double>() > 0);
  EXPECT_TRUE(std::isinf(e.eu_hat.item<double>()) && e.eu_hat.item<double>() > 0);
  expect_all_finite(e.jsd, "jsd stays finite");
  // KL(p || q) with p > 0 where q = 0 is +inf; with p = 0 where q = 0 it is finite.
  EXPECT_EQ(kl_divergence(lp({{0.5, 0.5}})[0], lp({{1.0, 0.0}})[0]).item<double>(), kInf);
  EXPECT_NEAR(kl_divergence(lp({{1.0, 0.0}})[0], lp({{0.5, 0.5}})[0]).item<double>(), kLn2, 1e-15);
  EXPECT_EQ(kl_divergence(lp({{1.0, 0.0}})[0], lp({{1.0, 0.0}})[0]).item<double>(), 0.0);
}

// --- values worked out by hand -----------------------------------------------------------------

TEST(Uncertainty, HandComputedTwoTokenVocabulary) {
  // p1 = (1, 0), p2 = (0, 1): p_bar = (1/2, 1/2), H(p_bar) = log 2, H(p_m) = 0, EU = log 2.
  {
    auto s = uncertainty_split(lp({{1.0, 0.0}, {0.0, 1.0}}));
    EXPECT_NEAR(s.epistemic.item<double>(), 0.693147180559945309, 1e-15);
    EXPECT_NEAR(s.total.item<double>(), 0.693147180559945309, 1e-15);
    EXPECT_EQ(s.aleatoric.item<double>(), 0.0);
  }
  // p1 = (0.5, 0.5), p2 = (0.9, 0.1): p_bar = (0.7, 0.3).
  //   H(p_bar) = -(0.7 ln 0.7 + 0.3 ln 0.3) = 0.7 * 0.356674943939 + 0.3 * 1.203972804326
  //            = 0.249672460757 + 0.361191841298 = 0.610864302055
  //   H(p1) = ln 2 = 0.693147180560
  //   H(p2) = -(0.9 ln 0.9 + 0.1 ln 0.1) = 0.9 * 0.105360515658 + 0.1 * 2.302585092994
  //         = 0.094824464092 + 0.230258509299 = 0.325082973391
  //   aleatoric = (0.693147180560 + 0.325082973391) / 2 = 0.509115076976
  //   EU = 0.610864302055 - 0.509115076976 = 0.101749225079
  {
    auto family = lp({{0.5, 0.5}, {0.9, 0.1}});
    auto s = uncertainty_split(family);
    EXPECT_NEAR(s.total.item<double>(), 0.610864302054893, 1e-12);
    EXPECT_NEAR(s.aleatoric.item<double>(), 0.509115076975697, 1e-12);
    EXPECT_NEAR(s.epistemic.item<double>(), 0.101749225079197, 1e-12);
    EXPECT_NEAR(epistemic_uncertainty(family).item<double>(), 0.101749225079197, 1e-12);
    EXPECT_NEAR(jsd(family).item<double>(), 0.101749225079197, 1e-12);
    EXPECT_NEAR(entropy(family).select(0, 1).item<double>(), 0.325082973391448, 1e-12);
  }
}

TEST(Uncertainty, HandComputedThreeTokenVocabulary) {
  // q1 = (1/2, 1/2, 0), q2 = (1/4, 1/4, 1/2), p_ref = (1/2, 1/4, 1/4); q_mix = (3/8, 3/8, 1/4).
  //   H(q1) = ln 2, H(q2) = 3/2 ln 2, H(q_mix) = 3/4 ln(8/3) + 1/4 ln 4 = 11/4 ln 2 - 3/4 ln 3
  //   JSD    = H(q_mix) - 5/4 ln 2 = 3/2 ln 2 - 3/4 ln 3                  = 0.215761554339
  //   bias   = 3/8 ln(3/4) + 3/8 ln(3/2) + 1/4 ln 1 = 3/8 ln(9/8)
  //          = 3/4 ln 3 - 9/8 ln 2                                       = 0.044168638371
  //   KL(q1 || p_ref) = 1/2 ln 1 + 1/2 ln 2 + 0 = 1/2 ln 2
  //   KL(q2 || p_ref) = 1/4 ln(1/2) + 1/4 ln 1 + 1/2 ln 2 = 1/4 ln 2
  //   EU_hat = 3/8 ln 2                                                  = 0.259930192710
  // with ln 2 = 0.693147180560, ln 3 = 1.098612288668.
  auto drafts = lp({{0.5, 0.5, 0.0}, {0.25, 0.25, 0.5}});
  auto ref = lp({{0.5, 0.25, 0.25}})[0];
  auto e = draft_estimator(drafts, ref);
  EXPECT_NEAR(e.jsd.item<double>(), 0.215761554338836, 1e-12);
  EXPECT_NEAR(e.bias.item<double>(), 0.044168638371144, 1e-12);
  EXPECT_NEAR(e.eu_hat.item<double>(), 0.259930192709979, 1e-12);
  auto rec = token_record({.drafts = drafts, .reference = ref});
  EXPECT_NEAR(rec.entropy_mix.item<double>(), 1.082195530038767, 1e-12);  // 11/4 ln2 - 3/4 ln3
  EXPECT_NEAR(rec.entropy_target.item<double>(), 1.5 * 0.693147180559945, 1e-12);  // H(p_ref)
  EXPECT_NEAR(rec.eu_hat.item<double>(), 0.259930192709979, 1e-12);
  EXPECT_FALSE(rec.eu_true.defined());
  // log q_mix
  expect_close(log_mixture(drafts), torch::tensor({0.375, 0.375, 0.25}, torch::kFloat64).log(),
               1e-15, "q_mix");
}

TEST(Uncertainty, WeightedMixture) {
  auto family = lp({{0.5, 0.5, 0.0}, {0.2, 0.3, 0.5}});
  // w = (1, 3) / 4: 0.25 * (0.5, 0.5, 0) + 0.75 * (0.2, 0.3, 0.5) = (0.275, 0.35, 0.375)
  expect_close(log_mixture(family, torch::tensor({1.0, 3.0}, torch::kFloat64)),
               torch::tensor({0.275, 0.35, 0.375}, torch::kFloat64).log(), 1e-15, "weights 1:3");
  expect_close(log_mixture(family, torch::tensor({0.0, 2.0}, torch::kFloat64)), family[1], 1e-15,
               "zero weight drops a member");
  expect_close(log_mixture(family, torch::tensor({1.0, 0.0}, torch::kFloat64)), family[0], 1e-15,
               "zero weight keeps exact zeros");
  expect_close(log_mixture(family, torch::tensor({5.0, 5.0}, torch::kFloat64)), log_mixture(family),
               1e-15, "equal weights");
  expect_error(
      [&] {
        log_mixture(family, torch::tensor({1.0, 1.0, 1.0}, torch::kFloat64));
      },
      "log_mixture: weights must have shape [2]");
  expect_error(
      [&] {
        log_mixture(family, torch::tensor({1.0, -1.0}, torch::kFloat64));
      },
      "non-negative");
}

// --- PyTorch reference -------------------------------------------------------------------------

const char* kPythonReference = R"PY(
import sys
import torch

torch.set_num_threads(1)
d, M, K, T, V = sys.argv[1], *map(int, sys.argv[2:])

def load(name, shape):
    with open(f"{d}/{name}.bin", "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=torch.float64).reshape(shape)

def save(name, t):
    with open(f"{d}/out_{name}.bin", "wb") as f:
        f.write(t.contiguous().double().numpy().tobytes())

# Textbook formulas in probability space, 0 log 0 = 0.
def H(p):
    return -torch.where(p > 0, p * torch.log(p), torch.zeros_like(p)).sum(-1)

def KL(p, q):
    return torch.where(p > 0, p * torch.log(p / q), torch.zeros_like(p)).sum(-1)

p = load("target", (M, T, V)).exp()
q = load("drafts", (K, T, V)).exp()
r = load("reference", (T, V)).exp()
pbar, qmix = p.mean(0), q.mean(0)
save("entropy", H(p))
save("total", H(pbar))
save("aleatoric", H(p).mean(0))
save("epistemic", H(pbar) - H(p).mean(0))
save("log_mixture", torch.log(pbar))
save("jsd", H(qmix) - H(q).mean(0))
save("bias", KL(qmix, r))
save("eu_hat", torch.stack([KL(q[k], r) for k in range(K)]).mean(0))
save("kl", KL(q[0], r))
)PY";

void write_binary(const std::filesystem::path& path, const torch::Tensor& t) {
  auto c = t.to(torch::kFloat64).cpu().contiguous();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(c.data_ptr<double>()),
            static_cast<std::streamsize>(c.numel() * sizeof(double)));
  ASSERT_TRUE(out.good()) << path;
}

torch::Tensor read_binary(const std::filesystem::path& path, c10::IntArrayRef shape) {
  std::ifstream in(path, std::ios::binary);
  auto t = torch::empty(shape, torch::kFloat64);
  in.read(reinterpret_cast<char*>(t.data_ptr<double>()),
          static_cast<std::streamsize>(t.numel() * sizeof(double)));
  if (!in.good() || in.peek() != std::char_traits<char>::eof()) {
    throw std::runtime_error("bad reference output " + path.string());
  }
  return t;
}

TEST(Uncertainty, MatchesPyTorchTextbookReference) {
  torch::manual_seed(7);
  const int64_t m = 4, k = 3, t = 8, v = 64;
  // Positions of every kind: smooth, with exact zeros, near one-hot, one-hot.
  auto target = torch::cat(
      {random_log_probs({m, 2, v}, Kind::Smooth), random_log_probs({m, 2, v}, Kind::Zeros),
       random_log_probs({m, 2, v}, Kind::Peaked), random_log_probs({m, 2, v}, Kind::OneHot)},
      1);
  auto drafts = torch::cat(
      {random_log_probs({k, 2, v}, Kind::Smooth), random_log_probs({k, 2, v}, Kind::Zeros),
       random_log_probs({k, 2, v}, Kind::Peaked), random_log_probs({k, 2, v}, Kind::OneHot)},
      1);
  auto ref = covering_reference(drafts);

  const auto dir = test::scratch_dir("uncertainty_pytorch_reference");
  write_binary(dir / "target.bin", target);
  write_binary(dir / "drafts.bin", drafts);
  write_binary(dir / "reference.bin", ref);
  {
    std::ofstream script(dir / "reference.py");
    script << kPythonReference;
  }
  const auto cmd = std::string("OMP_NUM_THREADS=1 ") + test::reference_python() + " '" +
                   (dir / "reference.py").string() + "' '" + dir.string() + "' " +
                   std::to_string(m) + " " + std::to_string(k) + " " + std::to_string(t) + " " +
                   std::to_string(v);
  auto res = test::run_command(cmd);
  ASSERT_EQ(res.exit_code, 0) << cmd << "\n" << res.out << res.err;
  auto ref_out = [&](const char* name, c10::IntArrayRef shape) {
    return read_binary(dir / (std::string("out_") + name + ".bin"), shape);
  };

  const ReduceOptions small{.chunk_positions = 3};  // chunking exercised against the reference
  auto split = uncertainty_split(target, small);
  expect_close(entropy(target, small), ref_out("entropy", {m, t}), 1e-9, "entropy");
  expect_close(split.total, ref_out("total", {t}), 1e-9, "total");
  expect_close(split.aleatoric, ref_out("aleatoric", {t}), 1e-9, "aleatoric");
  expect_close(split.epistemic, ref_out("epistemic", {t}), 1e-9, "epistemic");
  expect_close(epistemic_uncertainty(target), ref_out("epistemic", {t}), 1e-9, "EU");
  expect_close(log_mixture(target, {}, small), ref_out("log_mixture", {t, v}), 1e-9, "log_mixture");
  auto e = draft_estimator(drafts, ref, small);
  expect_close(e.jsd, ref_out("jsd", {t}), 1e-9, "jsd");
  expect_close(e.bias, ref_out("bias", {t}), 1e-9, "bias");
  expect_close(e.eu_hat, ref_out("eu_hat", {t}), 1e-9, "eu_hat");
  expect_close(kl_divergence(drafts[0], ref), ref_out("kl", {t}), 1e-9, "kl");
  auto rec = token_record({.target = target, .drafts = drafts, .reference = ref});
  expect_close(rec.eu_true, ref_out("epistemic", {t}), 1e-9, "record eu_true");
  expect_close(rec.jsd, ref_out("jsd", {t}), 1e-9, "record jsd");
  expect_close(rec.bias, ref_out("bias", {t}), 1e-9, "record bias");
  expect_close(rec.eu_hat, ref_out("eu_hat", {t}), 1e-9, "record eu_hat");
}

// --- numerics ----------------------------------------------------------------------------------

TEST(Uncertainty, UnderflowGivesFiniteResults) {
  // float32 logits 1e4 apart: exp(-1e4) is exactly 0 in float32 and float64. Where the drafts
  // underflow the reference is -inf (0 log 0/0 must be 0, not NaN).
  //   t0: q1 = (1, 0, 0, 0), q2 = (0, 1, 0, 0), p_ref = (1/2, 1/2, 0, 0)
  //       JSD = ln 2, bias = 0, EU_hat = ln 2
  //   t1: q1 = (0, 1, 0, 0), q2 = (0, 1/2, 1/2, 0), p_ref = (0, 1/2, 1/2, 0), q_mix = (0, 3/4, 1/4,
  //   0)
  //       JSD = H(3/4, 1/4) - 1/2 ln 2, bias = 3/4 ln(3/2) - 1/4 ln 2, EU_hat = 1/2 ln 2
  const float big = 1e4f, ninf = -std::numeric_limits<float>::infinity();
  auto draft_logits = torch::tensor({big, 0.f, -big, 0.f, 0.f, big, 0.f, -big,  //
                                     0.f, big, -big, 0.f, 0.f, big, big, -big})
                          .view({2, 2, 4});
  auto ref_logits = torch::tensor({0.f, 0.f, ninf, -big, -big, 0.f, 0.f, ninf}).view({2, 4});
  const double h = -(0.75 * std::log(0.75) + 0.25 * std::log(0.25));
  auto want_jsd = torch::tensor({kLn2, h - 0.5 * kLn2}, torch::kFloat64);
  auto want_bias = torch::tensor({0.0, 0.75 * std::log(1.5) - 0.25 * kLn2}, torch::kFloat64);
  auto want_eu_hat = torch::tensor({kLn2, 0.5 * kLn2}, torch::kFloat64);

  // Normalised in float32 first (the log-probabilities carry float32 rounding of ln 2) ...
  auto drafts = to_log_probs(draft_logits);
  auto ref = to_log_probs(ref_logits);
  EXPECT_EQ(drafts.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(drafts.exp().eq(0).any().item<bool>());  // real underflow
  auto rec = token_record({.target = drafts, .drafts = drafts, .reference = ref});
  for (const auto& [what, x] : {std::pair{"eu_true", rec.eu_true},
                                {"jsd", rec.jsd},
                                {"bias", rec.bias},
                                {"eu_hat", rec.eu_hat},
                                {"entropy_target", rec.entropy_target},
                                {"entropy_mix", rec.entropy_mix}}) {
    expect_all_finite(x, what);
  }
  expect_close(rec.jsd, want_jsd, 1e-6, "jsd (float32 log-probs)");
  expect_close(rec.bias, want_bias, 1e-6, "bias (float32 log-probs)");
  expect_close(rec.eu_hat, want_eu_hat, 1e-6, "eu_hat (float32 log-probs)");
  expect_all_finite(kl_divergence(drafts, ref.expand({2, 2, 4})), "kl");
  expect_all_finite(entropy(drafts), "entropy");
  expect_all_finite(uncertainty_split(drafts).total, "split");

  // The mixture keeps an underflowed tail finite (t0, entry 2: both members log q = -2e4, so
  // log q_mix = -2e4 although exp underflows) and an exact zero of every member at -inf.
  auto mix = log_mixture(to_log_probs(draft_logits.to(torch::kFloat64)));
  EXPECT_NEAR(mix[0][2].item<double>(), -2e4, 1e-9);
  EXPECT_EQ(log_mixture(lp({{1.0, 0.0, 0.0}, {0.5, 0.5, 0.0}}))[2].item<double>(), -kInf);

  // ... or normalised per chunk in float64 straight from the logits: exact.
  auto e = draft_estimator(draft_logits, ref_logits, {.chunk_positions = 1, .from_logits = true});
  expect_close(e.jsd, want_jsd, 1e-14, "jsd (from logits)");
  expect_close(e.bias, want_bias, 1e-14, "bias (from logits)");
  expect_close(e.eu_hat, want_eu_hat, 1e-14, "eu_hat (from logits)");
  expect_close(epistemic_uncertainty(draft_logits, {.from_logits = true}), want_jsd, 1e-14,
               "EU (from logits)");
}

TEST(Uncertainty, FromLogitsEqualsToLogProbs) {
  torch::manual_seed(3);
  auto logits = random_logits({3, 2, 5, 40}, Kind::Zeros) * 3 + 7;  // unnormalised, with -inf
  auto ref_logits = random_logits({2, 5, 40}, Kind::Smooth) - 2;
  const ReduceOptions opt{.from_logits = true};
  auto a = draft_estimator(logits, ref_logits, opt);
  auto b = draft_estimator(to_log_probs(logits), to_log_probs(ref_logits));
  expect_close(a.jsd, b.jsd, 1e-12, "jsd");
  expect_close(a.bias, b.bias, 1e-12, "bias");
  expect_close(a.eu_hat, b.eu_hat, 1e-12, "eu_hat");
  expect_close(entropy(logits, opt), entropy(to_log_probs(logits)), 1e-12, "entropy");
  // log_softmax is idempotent, so already-normalised inputs may go through from_logits too.
  expect_close(epistemic_uncertainty(to_log_probs(logits), opt),
               epistemic_uncertainty(to_log_probs(logits)), 1e-12, "idempotent");
  // Half-precision logits are normalised in float32.
  EXPECT_EQ(to_log_probs(logits.to(torch::kHalf)).scalar_type(), torch::kFloat32);
  EXPECT_EQ(to_log_probs(logits.to(torch::kFloat32)).scalar_type(), torch::kFloat32);
}

TEST(Uncertainty, ChunkedEqualsUnchunked) {
  torch::manual_seed(4);
  const int64_t k = 3, b = 2, t = 5, v = 33, n = b * t;
  auto target = random_log_probs({4, b, t, v}, Kind::Zeros);
  auto drafts = random_log_probs({k, b, t, v}, Kind::Zeros);
  auto ref = covering_reference(drafts);
  const ReduceOptions whole{.chunk_positions = n};
  for (const ReduceOptions& tiny :
       {ReduceOptions{.chunk_positions = 1}, ReduceOptions{.chunk_positions = 3},
        ReduceOptions{.max_chunk_elements = 1}, ReduceOptions{.max_chunk_elements = 200}}) {
    const std::string what = "chunk=" + std::to_string(tiny.chunk_positions) +
                             " max_elements=" + std::to_string(tiny.max_chunk_elements);
    expect_close(entropy(ref, tiny), entropy(ref, whole), 1e-12, what + " entropy");
    expect_close(mean_entropy(drafts, tiny), mean_entropy(drafts, whole), 1e-12, what);
    expect_close(log_mixture(drafts, {}, tiny), log_mixture(drafts, {}, whole), 1e-12, what);
    expect_close(kl_divergence(drafts[0], ref, tiny), kl_divergence(drafts[0], ref, whole), 1e-12,
                 what + " kl");
    expect_close(mean_kl_divergence(drafts, ref, tiny), mean_kl_divergence(drafts, ref, whole),
                 1e-12, what + " mean kl");
    expect_close(epistemic_uncertainty(target, tiny), epistemic_uncertainty(target, whole), 1e-12,
                 what + " EU");
    auto s1 = uncertainty_split(target, tiny), s2 = uncertainty_split(target, whole);
    expect_close(s1.total, s2.total, 1e-12, what + " total");
    expect_close(s1.aleatoric, s2.aleatoric, 1e-12, what + " aleatoric");
    expect_close(jsd(drafts, tiny), jsd(drafts, whole), 1e-12, what + " jsd");
    expect_close(bias_term(drafts, ref, tiny), bias_term(drafts, ref, whole), 1e-12, what);
    auto e1 = draft_estimator(drafts, ref, tiny), e2 = draft_estimator(drafts, ref, whole);
    expect_close(e1.eu_hat, e2.eu_hat, 1e-12, what + " eu_hat");
    auto r1 = token_record({.target = target, .drafts = drafts}, tiny);
    auto r2 = token_record({.target = target, .drafts = drafts}, whole);
    expect_close(r1.eu_true, r2.eu_true, 1e-12, what + " record eu_true");
    expect_close(r1.eu_hat, r2.eu_hat, 1e-12, what + " record eu_hat");
    expect_close(r1.entropy_mix, r2.entropy_mix, 1e-12, what + " record entropy_mix");
  }
  // The default plan (one chunk here) agrees too, and shapes are [B, T].
  EXPECT_EQ(jsd(drafts).sizes(), (std::vector<int64_t>{b, t}));
  expect_close(jsd(drafts), jsd(drafts, whole), 1e-12, "default");
}

TEST(Uncertainty, Float32InputAccumulatesInFloat64) {
  torch::manual_seed(5);
  auto target32 = random_log_probs({4, 7, 5000}, Kind::Zeros).to(torch::kFloat32);
  auto drafts32 = random_log_probs({3, 7, 5000}, Kind::Smooth).to(torch::kFloat32);
  auto ref32 = covering_reference(drafts32.to(torch::kFloat64)).to(torch::kFloat32);
  auto target64 = target32.to(torch::kFloat64);
  auto drafts64 = drafts32.to(torch::kFloat64);
  auto ref64 = ref32.to(torch::kFloat64);
  const ReduceOptions chunked{.chunk_positions = 2};
  auto a = token_record({.target = target32, .drafts = drafts32, .reference = ref32}, chunked);
  auto b = token_record({.target = target64, .drafts = drafts64, .reference = ref64});
  EXPECT_EQ(a.eu_hat.scalar_type(), torch::kFloat64);
  EXPECT_EQ(a.eu_true.scalar_type(), torch::kFloat64);
  expect_close(a.eu_true, b.eu_true, 1e-12, "eu_true");
  expect_close(a.jsd, b.jsd, 1e-12, "jsd");
  expect_close(a.bias, b.bias, 1e-12, "bias");
  expect_close(a.eu_hat, b.eu_hat, 1e-12, "eu_hat");
  expect_close(a.entropy_target, b.entropy_target, 1e-12, "entropy_target");
  expect_close(a.entropy_mix, b.entropy_mix, 1e-12, "entropy_mix");
  EXPECT_EQ(entropy(ref32).scalar_type(), torch::kFloat64);
  expect_close(entropy(ref32), entropy(ref64), 1e-12, "entropy");
  // The accumulation dtype is an option; float32 accumulation is close but not float64-exact.
  auto f32 = jsd(drafts32, {.accumulate = torch::kFloat32});
  EXPECT_EQ(f32.scalar_type(), torch::kFloat32);
  expect_close(f32, b.jsd, 1e-4, "float32 accumulation");
  // log_mixture keeps the family's dtype.
  EXPECT_EQ(log_mixture(drafts32).scalar_type(), torch::kFloat32);
}

TEST(Uncertainty, ShapesAndLayouts) {
  torch::manual_seed(6);
  auto drafts = random_log_probs({3, 6, 20}, Kind::Zeros);
  auto ref = covering_reference(drafts);
  // [K, V] -> scalar; [K, 0, V] -> [0].
  EXPECT_EQ(jsd(drafts.select(1, 0)).dim(), 0);
  expect_close(jsd(drafts.select(1, 0)), jsd(drafts)[0], 1e-15, "scalar position");
  EXPECT_EQ(draft_estimator(drafts.narrow(1, 0, 0), ref.narrow(0, 0, 0)).eu_hat.sizes(),
            (std::vector<int64_t>{0}));
  EXPECT_EQ(entropy(ref.narrow(0, 0, 0)).sizes(), (std::vector<int64_t>{0}));
  // Non-contiguous families: members not outermost in memory (flattened as a view), and
  // position dimensions in swapped order (cannot be flattened as a view, copied).
  auto transposed = drafts.transpose(0, 1).contiguous().transpose(0, 1);
  ASSERT_FALSE(transposed.is_contiguous());
  expect_close(draft_estimator(transposed, ref, {.chunk_positions = 4}).eu_hat,
               draft_estimator(drafts, ref).eu_hat, 1e-15, "non-contiguous");
  auto drafts4 = random_log_probs({3, 2, 3, 20}, Kind::Zeros);
  auto ref4 = covering_reference(drafts4);
  auto swapped = drafts4.transpose(1, 2).contiguous().transpose(1, 2);
  auto ref_swapped = ref4.transpose(0, 1).contiguous().transpose(0, 1);
  auto e4 = draft_estimator(swapped, ref_swapped, {.chunk_positions = 4});
  EXPECT_EQ(e4.eu_hat.sizes(), (std::vector<int64_t>{2, 3}));
  expect_close(e4.eu_hat, draft_estimator(drafts4, ref4).eu_hat, 1e-15, "swapped positions");
  // Broadcast-expanded members (stride 0) need no copy and match.
  expect_close(mean_kl_divergence(ref.unsqueeze(0).expand({5, 6, 20}), drafts[1]),
               kl_divergence(ref, drafts[1]), 1e-15, "expanded");
}

// --- token record ------------------------------------------------------------------------------

TEST(Uncertainty, TokenRecordMatchesTheSingleQuantities) {
  torch::manual_seed(8);
  auto target = random_log_probs({4, 9, 30}, Kind::Zeros);
  auto drafts = random_log_probs({3, 9, 30}, Kind::Peaked);
  auto pbar = log_mixture(target);
  // Explicit reference (the proxy p_mix here: a smooth distribution).
  auto ref = covering_reference(torch::cat({target, drafts}));
  auto rec =
      token_record({.target = target, .drafts = drafts, .reference = ref}, {.chunk_positions = 2});
  expect_close(rec.eu_true, epistemic_uncertainty(target), 1e-12, "eu_true");
  expect_close(rec.jsd, jsd(drafts), 1e-12, "jsd");
  expect_close(rec.bias, bias_term(drafts, ref), 1e-12, "bias");
  expect_close(rec.eu_hat, mean_kl_divergence(drafts, ref), 1e-12, "eu_hat");
  expect_close(rec.entropy_target, entropy(ref), 1e-12, "entropy_target");
  expect_close(rec.entropy_mix, entropy(log_mixture(drafts)), 1e-12, "entropy_mix");
  // Without a reference, p_ref is the target family mean.
  auto rec2 = token_record({.target = target, .drafts = drafts});
  expect_close(rec2.bias, bias_term(drafts, pbar), 1e-12, "bias vs p_bar");
  expect_close(rec2.eu_hat, mean_kl_divergence(drafts, pbar), 1e-12, "eu_hat vs p_bar");
  expect_close(rec2.entropy_target, uncertainty_split(target).total, 1e-12, "H(p_bar)");
  // Only what the inputs allow is computed.
  auto only_drafts = token_record({.drafts = drafts});
  EXPECT_FALSE(only_drafts.eu_true.defined());
  EXPECT_FALSE(only_drafts.bias.defined());
  EXPECT_FALSE(only_drafts.eu_hat.defined());
  EXPECT_FALSE(only_drafts.entropy_target.defined());
  expect_close(only_drafts.jsd, jsd(drafts), 1e-12, "drafts only: jsd");
  expect_close(only_drafts.entropy_mix, entropy(log_mixture(drafts)), 1e-12, "drafts only: H");
  auto only_target = token_record({.target = target});
  expect_close(only_target.eu_true, epistemic_uncertainty(target), 1e-12, "target only");
  EXPECT_FALSE(only_target.jsd.defined());
  EXPECT_FALSE(only_target.entropy_mix.defined());
  auto only_ref = token_record({.reference = ref});
  expect_close(only_ref.entropy_target, entropy(ref), 1e-12, "reference only");
  EXPECT_FALSE(only_ref.eu_true.defined());
}

// --- aggregation -------------------------------------------------------------------------------

TEST(Uncertainty, AggregateSequenceWithPaddingMask) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto per_token = torch::tensor({1.0, 2.0, 3.0, 4.0,   //
                                  5.0, nan, kInf, 7.0,  // padding holds garbage
                                  9.0, 9.0, 9.0, 9.0},
                                 torch::kFloat64)
                       .view({3, 4});
  auto mask = torch::tensor({1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0}, torch::kInt64).view({3, 4});
  // Row 0 keeps 1, 2, 3; row 1 keeps 5, 7; row 2 keeps nothing (-> 0).
  auto want = [](std::vector<double> v) { return torch::tensor(v, torch::kFloat64); };
  expect_close(aggregate_sequence(per_token, mask, Aggregation::Sum), want({6, 12, 0}), 0, "sum");
  expect_close(aggregate_sequence(per_token, mask, Aggregation::Mean), want({2, 6, 0}), 0, "mean");
  expect_close(aggregate_sequence(per_token, mask, Aggregation::Max), want({3, 7, 0}), 0, "max");
  expect_close(aggregate_sequence(per_token, mask.to(torch::kBool), Aggregation::Mean),
               want({2, 6, 0}), 0, "bool mask");
  // No mask: every position; row 1's NaN then propagates, as it should.
  auto clean = per_token.narrow(0, 0, 1);
  expect_close(aggregate_sequence(clean, {}, Aggregation::Sum), want({10}), 0, "sum, no mask");
  expect_close(aggregate_sequence(clean, {}, Aggregation::Mean), want({2.5}), 0, "mean, no mask");
  expect_close(aggregate_sequence(clean, {}, Aggregation::Max), want({4}), 0, "max, no mask");
  EXPECT_TRUE(std::isnan(aggregate_sequence(per_token, {}, Aggregation::Sum)[1].item<double>()));
  // [T] -> scalar; T = 0 -> zeros [B].
  EXPECT_EQ(aggregate_sequence(per_token[0], mask[0], Aggregation::Sum).item<double>(), 6.0);
  expect_close(aggregate_sequence(torch::zeros({2, 0}, torch::kFloat64), {}, Aggregation::Max),
               want({0, 0}), 0, "no tokens");
  EXPECT_EQ(parse_aggregation("mean"), Aggregation::Mean);
  EXPECT_STREQ(to_string(parse_aggregation("max")), "max");
  expect_error([] { parse_aggregation("avg"); }, "aggregation: unknown mode 'avg'");
  expect_error([&] { aggregate_sequence(per_token, mask[0], Aggregation::Sum); },
               "aggregate_sequence: mask has shape [4] but per_token has [3, 4]");
}

// --- errors ------------------------------------------------------------------------------------

TEST(Uncertainty, ClearErrors) {
  auto drafts = torch::log_softmax(torch::randn({2, 3, 512}, torch::kFloat64), -1);
  auto ref500 = torch::log_softmax(torch::randn({3, 500}, torch::kFloat64), -1);
  auto ref4 = torch::log_softmax(torch::randn({4, 512}, torch::kFloat64), -1);
  expect_error([&] { bias_term(drafts, ref500); },
               "bias_term: drafts have vocab 512 but reference has 500");
  expect_error([&] { draft_estimator(drafts, ref4); },
               "draft_estimator: drafts have positions [3] but reference has [4]");
  expect_error([&] { mean_kl_divergence(drafts, ref500); },
               "mean_kl_divergence: members have vocab 512 but reference has 500");
  expect_error([&] { kl_divergence(drafts[0], ref500); },
               "kl_divergence: p has vocab 512 but q has 500");
  expect_error(
      [&] {
        jsd(torch::ones({2, 3, 4}, torch::kInt64));
      },
      "jsd: drafts must be floating-point log-probabilities, got dtype Long");
  expect_error([&] { jsd(ref500[0]); }, "jsd: drafts must have at least 2 dimensions");
  expect_error(
      [&] {
        epistemic_uncertainty(torch::zeros({0, 3, 4}, torch::kFloat64));
      },
      "epistemic_uncertainty: family has no members");
  expect_error([&] { entropy(torch::zeros({3, 0}, torch::kFloat64)); }, "empty vocabulary");
  expect_error([&] { entropy(ref4, {.chunk_positions = -1}); }, "chunk_positions must be >= 0");
  expect_error([&] { entropy(ref4, {.accumulate = torch::kInt32}); }, "floating-point");
  expect_error([&] { token_record({}); }, "token_record: no inputs");
  expect_error([&] { token_record({.target = drafts, .drafts = drafts.narrow(2, 0, 500)}); },
               "token_record: target members have vocab 512 but drafts have 500");
  expect_error([&] { token_record({.drafts = drafts, .reference = ref4}); },
               "token_record: drafts have positions [3] but reference has [4]");
}

}  // namespace
}  // namespace drafteu::uncertainty
