// Tests of src/eval/: the testbed task (determinism, disjoint splits, arithmetic recomputed here),
// GSM8K answer extraction on the real data set, metrics and logistic regression against hand
// values and a textbook PyTorch reference in Debian's python3, the BPE tokenizer, pretraining.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "distill/config.h"
#include "distill/drafts.h"
#include "eval/answers.h"
#include "eval/bpe_trainer.h"
#include "eval/experiment_config.h"
#include "eval/testbed_models.h"
#include "eval/testbed_task.h"
#include "model/checkpoint.h"
#include "model/fast_forward.h"
#include "stats/logistic.h"
#include "stats/metrics.h"
#include "test_support.h"
#include "util/config_fields.h"
#include "util/error.h"
#include "util/file.h"

namespace drafteu::eval {
using namespace stats;
namespace {

// --- testbed task -------------------------------------------------------------------------------

// Evaluates "a*b+c-d/e" with the usual precedence; integers only, division must be exact.
int64_t eval_expr(const std::string& e) {
  std::vector<int64_t> terms;  // products, with sign
  std::vector<char> ops;
  size_t i = 0;
  auto number = [&] {
    int64_t v = 0;
    if (i >= e.size() || !std::isdigit(static_cast<unsigned char>(e[i])))
      throw std::runtime_error("bad expression " + e);
    while (i < e.size() && std::isdigit(static_cast<unsigned char>(e[i])))
      v = v * 10 + (e[i++] - '0');
    return v;
  };
  int64_t total = 0, term = number();
  int sign = 1;
  while (i < e.size()) {
    const char op = e[i++];
    const int64_t v = number();
    if (op == '*') {
      term *= v;
    } else if (op == '/') {
      if (v == 0 || term % v != 0) throw std::runtime_error("inexact division in " + e);
      term /= v;
    } else {
      total += sign * term;
      sign = op == '+' ? 1 : -1;
      term = v;
    }
  }
  return total + sign * term;
}

TEST(TestbedTask, DeterministicPerSeed) {
  TaskOptions o;
  auto a = generate_task(o, 200, 50), b = generate_task(o, 200, 50);
  ASSERT_EQ(a.train.size(), 200u);
  ASSERT_EQ(a.test.size(), 50u);
  for (size_t i = 0; i < a.train.size(); ++i) {
    EXPECT_EQ(a.train[i].question, b.train[i].question);
    EXPECT_EQ(a.train[i].solution, b.train[i].solution);
  }
  o.seed = 99;
  auto c = generate_task(o, 200, 50);
  size_t same = 0;
  for (size_t i = 0; i < a.train.size(); ++i) same += a.train[i].question == c.train[i].question;
  EXPECT_LT(same, 5u);
}

TEST(TestbedTask, SplitsNeverShareAProblem) {
  TaskOptions o;
  auto s = generate_task(o, 3000, 600);
  std::set<std::string> train;
  for (const auto& p : s.train) EXPECT_TRUE(train.insert(p.question).second) << "duplicate";
  for (const auto& p : s.test) EXPECT_EQ(train.count(p.question), 0u) << p.question;
  // A split's content does not depend on the other's size.
  auto t = generate_task(o, 3000, 10);
  for (size_t i = 0; i < s.train.size(); ++i) ASSERT_EQ(s.train[i].question, t.train[i].question);
  // Another seed's test problems are never another seed's training problems either.
  o.seed = 7;
  auto u = generate_task(o, 100, 300);
  for (const auto& p : u.test) EXPECT_EQ(train.count(p.question), 0u) << p.question;
}

TEST(TestbedTask, WorkedSolutionsAreRight) {
  TaskOptions o;
  o.difficulty = 1.0;
  auto s = generate_task(o, 2000, 200);
  std::set<std::string> seen_templates;
  std::vector<int> steps_seen(5, 0);
  const std::regex note(R"((\d+(?:[-+*/]\d+)+)=(\d+))");
  const std::regex gsm_note(R"(<<([^=<>]+)=(-?\d+)>>(-?\d+))");
  for (const auto& p : s.train) {
    seen_templates.insert(p.template_name);
    ASSERT_GE(p.steps.size(), 2u);
    ASSERT_LE(p.steps.size(), 4u);
    ++steps_seen[p.steps.size()];
    // Every calculator note in the text is right, and they are the recorded steps.
    size_t n = 0;
    int64_t last = 0;
    for (auto it = std::sregex_iterator(p.solution.begin(), p.solution.end(), note);
         it != std::sregex_iterator(); ++it, ++n) {
      const int64_t v = eval_expr((*it)[1].str());
      ASSERT_EQ(v, std::stoll((*it)[2].str())) << p.solution;
      ASSERT_LT(n, p.steps.size());
      EXPECT_EQ((*it)[1].str(), p.steps[n].expr);
      last = v;
    }
    ASSERT_EQ(n, p.steps.size()) << p.solution;
    EXPECT_EQ(last, p.answer) << p.solution;
    const std::string boxed = "\\boxed{" + std::to_string(p.answer) + "}";
    ASSERT_GE(p.solution.size(), boxed.size());
    EXPECT_EQ(p.solution.substr(p.solution.size() - boxed.size()), boxed);
    EXPECT_TRUE(is_correct(p.solution, static_cast<double>(p.answer)));
    // GSM8K form: <<e=v>>v notes, "#### N" at the end.
    const std::string g = p.gsm8k_answer();
    size_t gn = 0;
    for (auto it = std::sregex_iterator(g.begin(), g.end(), gsm_note); it != std::sregex_iterator();
         ++it, ++gn) {
      EXPECT_EQ(eval_expr((*it)[1].str()), std::stoll((*it)[2].str()));
      EXPECT_EQ((*it)[2].str(), (*it)[3].str());
    }
    EXPECT_EQ(gn, p.steps.size());
    auto ref = reference_answer(g);
    ASSERT_TRUE(ref.has_value()) << g;
    EXPECT_EQ(*ref, static_cast<double>(p.answer));
    // The question names the numbers the solution starts from, not the answer's notes.
    EXPECT_EQ(p.question.find("<<"), std::string::npos);
  }
  EXPECT_GE(seen_templates.size(), 12u);
  EXPECT_EQ(seen_templates.size(), template_names().size());
  for (int k = 2; k <= 4; ++k) EXPECT_GT(steps_seen[static_cast<size_t>(k)], 50) << k << " steps";
}

TEST(TestbedTask, DifficultyGrowsTheNumbers) {
  TaskOptions easy, hard;
  easy.difficulty = 0.0;
  hard.difficulty = 1.0;
  auto mean_answer = [](const TaskSplits& s) {
    double sum = 0;
    for (const auto& p : s.train) sum += static_cast<double>(p.answer);
    return sum / static_cast<double>(s.train.size());
  };
  const double e = mean_answer(generate_task(easy, 500, 10));
  const double h = mean_answer(generate_task(hard, 500, 10));
  EXPECT_GT(h, 2 * e);
  TaskOptions two;
  two.max_steps = 2;
  for (const auto& p : generate_task(two, 200, 10).train) EXPECT_EQ(p.steps.size(), 2u);
}

TEST(TestbedTask, VariedPhrasingOnlyOpensLinesWithConnectives) {
  TaskOptions fixed_o, varied_o;
  varied_o.varied_phrasing = true;
  const auto fixed = generate_task(fixed_o, 600, 50), varied = generate_task(varied_o, 600, 50);
  ASSERT_EQ(fixed.train.size(), varied.train.size());
  const std::vector<std::string> connectives = {"So ", "Next, ", "This means "};
  std::map<std::string, int> opened;  // "" = the line as it was
  auto split_lines = [](const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  };
  for (size_t i = 0; i < fixed.train.size(); ++i) {
    const Problem &f = fixed.train[i], &v = varied.train[i];
    // The same problem, numbers and notes: only the wording of the solution moves.
    ASSERT_EQ(f.question, v.question);
    ASSERT_EQ(f.answer, v.answer);
    ASSERT_EQ(f.steps.size(), v.steps.size());
    const auto fl = split_lines(f.solution), vl = split_lines(v.solution);
    ASSERT_EQ(fl.size(), vl.size()) << v.solution;
    EXPECT_EQ(vl.back(), fl.back());  // the \boxed line
    for (size_t k = 0; k + 1 < fl.size(); ++k) {
      if (vl[k] == fl[k]) {
        ++opened[""];
        continue;
      }
      bool matched = false;
      for (const auto& c : connectives) {
        if (vl[k].rfind(c, 0) != 0) continue;
        std::string rest = vl[k].substr(c.size()), want = fl[k];
        // Lowercased after the connective, except a name ("So Mia is ...").
        if (rest != want) want[0] = static_cast<char>(std::tolower(want[0]));
        EXPECT_EQ(rest, want) << vl[k];
        ++opened[c];
        matched = true;
      }
      EXPECT_TRUE(matched) << vl[k];
    }
    EXPECT_TRUE(is_correct(v.solution, static_cast<double>(v.answer))) << v.solution;
    EXPECT_EQ(*reference_answer(v.gsm8k_answer()), static_cast<double>(v.answer));
  }
  // Four openings, drawn evenly: each takes 25 % of ~1300 lines, give or take 5 points.
  int lines = 0;
  for (const auto& [c, n] : opened) lines += n;
  ASSERT_GT(lines, 1000);
  for (const std::string c : {"", "So ", "Next, ", "This means "}) {
    EXPECT_GT(opened[c], lines / 5) << "'" << c << "'";
    EXPECT_LT(opened[c], lines * 3 / 10) << "'" << c << "'";
  }
}

TEST(TestbedTask, JsonlRoundTripsInGsm8kForm) {
  auto s = generate_task(TaskOptions{}, 30, 5);
  const auto dir = test::scratch_dir("eval_jsonl");
  write_gsm8k_jsonl(dir / "train.jsonl", s.train);
  auto back = read_gsm8k_jsonl(dir / "train.jsonl");
  ASSERT_EQ(back.size(), s.train.size());
  for (size_t i = 0; i < back.size(); ++i) {
    EXPECT_EQ(back[i].question, s.train[i].question);
    EXPECT_EQ(back[i].answer, s.train[i].gsm8k_answer());
    EXPECT_EQ(*reference_answer(back[i].answer), static_cast<double>(s.train[i].answer));
  }
  // The same loader reads the real GSM8K.
  auto real = read_gsm8k_jsonl(test::require_file(test::shared_dir() / "data/gsm8k/test.jsonl"));
  EXPECT_EQ(real.size(), 1319u);
}

// --- GSM8K answers ------------------------------------------------------------------------------

TEST(Answers, RealGsm8kReferencesParseAndMatchThemselves) {
  for (const char* file : {"data/gsm8k/test.jsonl", "data/gsm8k/train.jsonl"}) {
    auto data = read_gsm8k_jsonl(test::require_file(test::shared_dir() / file));
    ASSERT_GT(data.size(), 1000u);
    for (const auto& ex : data) {
      const auto ref = reference_answer(ex.answer);
      ASSERT_TRUE(ref.has_value()) << ex.answer;
      const std::string tail = ex.answer.substr(ex.answer.rfind("####") + 4);
      // The integer after "####", commas removed, read independently.
      std::string digits;
      for (char c : tail)
        if (std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.') digits += c;
      EXPECT_EQ(*ref, std::stod(digits)) << tail;
      EXPECT_TRUE(is_correct(ex.answer, *ref)) << ex.answer;
      EXPECT_TRUE(is_correct("The answer is \\boxed{" + tail + "}.", *ref)) << tail;
      EXPECT_TRUE(is_correct("So the total is" + tail + ".", *ref)) << tail;
      EXPECT_FALSE(is_correct(ex.answer, *ref + 1)) << ex.answer;
    }
  }
}

TEST(Answers, HandCases) {
  EXPECT_EQ(*extract_final_answer("x \\boxed{3} then \\boxed{17}. #### 5"), "17");
  EXPECT_EQ(*extract_final_answer("\\boxed{\\frac{3}{4}}"), "\\frac{3}{4}");
  EXPECT_EQ(*extract_final_answer("Total 9.\n#### 1,200\n"), "1,200");
  EXPECT_EQ(*extract_final_answer("She has 3 apples and 4 pears, 7 in all."), "7");
  EXPECT_FALSE(extract_final_answer("no numbers here").has_value());
  EXPECT_EQ(*extract_final_answer("\\boxed{} 42"), "42");  // empty box falls through

  EXPECT_DOUBLE_EQ(*parse_number("$1,234.50"), 1234.5);
  EXPECT_DOUBLE_EQ(*parse_number("25%"), 25);
  EXPECT_DOUBLE_EQ(*parse_number("18.0"), 18);
  EXPECT_DOUBLE_EQ(*parse_number("3/4"), 0.75);
  EXPECT_DOUBLE_EQ(*parse_number("\\frac{3}{4}"), 0.75);
  EXPECT_DOUBLE_EQ(*parse_number("\\dfrac{10}{4} cups"), 2.5);
  EXPECT_DOUBLE_EQ(*parse_number("-7"), -7);
  EXPECT_DOUBLE_EQ(*parse_number("x = -7 degrees"), -7);
  EXPECT_DOUBLE_EQ(*parse_number("12 apples"), 12);
  EXPECT_DOUBLE_EQ(*parse_number("\\$18 per day"), 18);
  EXPECT_DOUBLE_EQ(*parse_number("\\text{5 dollars}"), 5);
  EXPECT_DOUBLE_EQ(*parse_number(".5"), 0.5);
  EXPECT_FALSE(parse_number("none").has_value());
  EXPECT_FALSE(parse_number("3/0").has_value());

  EXPECT_TRUE(is_correct("She buys 3*4=12 apples.\n\\boxed{17}", 17));
  EXPECT_TRUE(is_correct("#### $1,000", 1000));
  EXPECT_TRUE(is_correct("The price is \\boxed{\\$18.00}", 18));
  EXPECT_FALSE(is_correct("\\boxed{17} ... 18", 18));  // the box wins over the last number
  EXPECT_TRUE(is_correct("16-3-4=9 eggs", 9));         // "-4" there is subtraction
  EXPECT_FALSE(is_correct("", 0));
  EXPECT_FALSE(reference_answer("no hashes 5").has_value());
}

// --- metrics ------------------------------------------------------------------------------------

TEST(Metrics, HandComputedValues) {
  EXPECT_DOUBLE_EQ(rmse({1, 2, 3}, {1, 2, 5}), std::sqrt(4.0 / 3));
  EXPECT_NEAR(pearson({1, 2, 3}, {2, 4, 6}), 1, 1e-15);
  EXPECT_NEAR(pearson({1, 2, 3}, {3, 2, 1}), -1, 1e-15);
  EXPECT_EQ(average_ranks({10, 20, 20, 5}), (std::vector<double>{2, 3.5, 3.5, 1}));
  EXPECT_NEAR(spearman({1, 2, 3, 4}, {1, 4, 9, 16}), 1, 1e-15);
  // Lin's CCC: a shifted copy correlates perfectly but does not agree.
  // a = {1,2,3}, b = a + 1: var 2/3 each, cov 2/3, mean gap 1 -> 2(2/3)/(4/3 + 1) = 4/7.
  EXPECT_NEAR(concordance({1, 2, 3}, {2, 3, 4}), 4.0 / 7, 1e-15);
  EXPECT_NEAR(concordance({1, 2, 3}, {1, 2, 3}), 1, 1e-15);
  // AUROC: pairs (pos, neg) = (0.8,0.3) win, (0.8,0.5) win, (0.5,0.3) win, (0.5,0.5) tie -> 3.5/4.
  EXPECT_DOUBLE_EQ(auroc({0.8, 0.5, 0.3, 0.5}, {1, 1, 0, 0}), 3.5 / 4);
  EXPECT_TRUE(std::isnan(auroc({0.1, 0.2}, {1, 1})));
  // ECE with 15 bins: 0.1 and 0.12 share bin 1 (mean p 0.11, mean y 0.5), 0.9 is alone (y 1).
  EXPECT_NEAR(expected_calibration_error({0.1, 0.12, 0.9}, {0, 1, 1}),
              (2 * std::fabs(0.5 - 0.11) + std::fabs(1 - 0.9)) / 3, 1e-15);
  EXPECT_DOUBLE_EQ(expected_calibration_error({1.0}, {1}), 0);  // p = 1 falls in the last bin
  EXPECT_DOUBLE_EQ(brier_score({0.2, 0.9}, {0, 1}), (0.04 + 0.01) / 2);
  // PRR: uncertainty ranks the two wrong answers first -> oracle -> 1; reversed -> negative.
  EXPECT_NEAR(prediction_rejection_ratio({0.9, 0.8, 0.1, 0.2}, {0, 0, 1, 1}), 1, 1e-15);
  EXPECT_LT(prediction_rejection_ratio({0.1, 0.2, 0.9, 0.8}, {0, 0, 1, 1}), 0);
  // All tied: rejection in expectation equals random -> 0.
  EXPECT_NEAR(prediction_rejection_ratio({1, 1, 1, 1}, {0, 1, 1, 0}), 0, 1e-15);
  EXPECT_TRUE(std::isnan(prediction_rejection_ratio({1, 2}, {1, 1})));
  // By hand: correct {0,1,1}, unc {3,2,1}: curve 2/3, 1, 1 (area 8/3); random 3 * 2/3 = 2;
  // oracle is the same ranking -> 1. Reversed unc {1,2,3}: curve 2/3, 1/2, 0 -> (7/6 - 2)/(2/3).
  EXPECT_NEAR(prediction_rejection_ratio({3, 2, 1}, {0, 1, 1}), 1, 1e-15);
  EXPECT_NEAR(prediction_rejection_ratio({1, 2, 3}, {0, 1, 1}), (7.0 / 6 - 2) / (2.0 / 3), 1e-15);
  auto ms = mean_std({1, 2, 3, 4});
  EXPECT_DOUBLE_EQ(ms.mean, 2.5);
  EXPECT_DOUBLE_EQ(ms.std, std::sqrt(5.0 / 3));
  EXPECT_DOUBLE_EQ(mean_std({7}).std, 0);
  EXPECT_THROW(rmse({1}, {1, 2}), Error);
}

// Textbook formulas, written independently: Spearman via ranks, AUROC by counting pairs, ECE by
// loops, PRR by explicit rejection, logistic regression by Newton with autograd's Hessian.
const char* kPythonReference = R"PY(
import json, math, sys
import torch
torch.set_default_dtype(torch.float64)
d = json.load(open(sys.argv[1]))
out = {}
a, b = d["a"], d["b"]
n = len(a)
out["rmse"] = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)) / n)
def mean(v): return sum(v) / len(v)
def pear(x, y):
    mx, my = mean(x), mean(y)
    c = sum((p - mx) * (q - my) for p, q in zip(x, y))
    return c / math.sqrt(sum((p - mx) ** 2 for p in x) * sum((q - my) ** 2 for q in y))
def ranks(x):
    # average 1-based rank: 1 + (#smaller) + (#equal - 1) / 2
    return [1 + sum(1 for w in x if w < v) + (sum(1 for w in x if w == v) - 1) / 2 for v in x]
out["pearson"] = pear(a, b)
out["spearman"] = pear(ranks(a), ranks(b))
ma, mb = mean(a), mean(b)
va = sum((x - ma) ** 2 for x in a) / n
vb = sum((x - mb) ** 2 for x in b) / n
cov = sum((x - ma) * (y - mb) for x, y in zip(a, b)) / n
out["ccc"] = 2 * cov / (va + vb + (ma - mb) ** 2)
s, y = d["score"], d["label"]
pos = [v for v, l in zip(s, y) if l == 1]
neg = [v for v, l in zip(s, y) if l == 0]
out["auroc"] = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg) / (len(pos) * len(neg))
p = d["prob"]
bins = [[] for _ in range(15)]
for pi, li in zip(p, y):
    k = min(14, int(math.floor(pi * 15)))
    bins[k].append((pi, li))
out["ece"] = sum(len(bk) / n * abs(mean([l for _, l in bk]) - mean([q for q, _ in bk])) for bk in bins if bk)
out["brier"] = mean([(pi - li) ** 2 for pi, li in zip(p, y)])
u, c = d["unc"], d["correct"]
def area(order):
    return sum(mean([c[i] for i in order[k:]]) for k in range(len(order)))
by_unc = sorted(range(n), key=lambda i: -u[i])
oracle = sorted(range(n), key=lambda i: c[i])
rand = mean(c) * n
out["prr"] = (area(by_unc) - rand) / (area(oracle) - rand)
X = torch.tensor(d["X"]); Y = torch.tensor(d["y"], dtype=torch.float64)
mu = X.mean(0); sd = X.std(0, unbiased=False)
Z = (X - mu) / sd
l2 = d["l2"]
w = torch.zeros(Z.shape[1] + 1)
def f(w):
    z = Z @ w[:-1] + w[-1]
    return torch.nn.functional.binary_cross_entropy_with_logits(z, Y) + 0.5 * l2 * (w[:-1] ** 2).sum()
for _ in range(50):
    g = torch.autograd.functional.jacobian(f, w)
    H = torch.autograd.functional.hessian(f, w)
    w = w - torch.linalg.solve(H, g)
out["coef"] = w[:-1].tolist(); out["intercept"] = float(w[-1])
out["mean"] = mu.tolist(); out["std"] = sd.tolist()
json.dump(out, open(sys.argv[2], "w"))
)PY";

TEST(Metrics, MatchTheTextbookPythonReference) {
  std::mt19937_64 rng(2024);
  auto unif = [&] { return static_cast<double>(rng() >> 11) * 0x1.0p-53; };
  const size_t n = 300;
  std::vector<double> a, b, score, prob, unc;
  std::vector<int> label, correct;
  std::vector<std::vector<double>> x;
  for (size_t i = 0; i < n; ++i) {
    a.push_back(unif());
    // Rounded so that ranks tie.
    b.push_back(std::round((0.7 * a.back() + 0.3 * unif()) * 20) / 20);
    const double z = 2 * unif() - 1, w = unif() * 3;
    label.push_back(unif() < 1 / (1 + std::exp(-(2 * z - w + 1))) ? 1 : 0);
    score.push_back(std::round((z + 0.5 * unif()) * 10) / 10);
    prob.push_back(unif());
    unc.push_back(unif() + (label.back() ? 0.0 : 0.3));
    correct.push_back(label.back() ? 0 : 1);
    x.push_back({z, w, z * w + 10});
  }
  const double l2 = 1e-3;
  const auto dir = test::scratch_dir("eval_python_reference");
  {
    nlohmann::json j{{"a", a},       {"b", b},     {"score", score},     {"label", label},
                     {"prob", prob}, {"unc", unc}, {"correct", correct}, {"X", x},
                     {"y", label},   {"l2", l2}};
    std::ofstream(dir / "in.json") << j.dump();
    std::ofstream(dir / "reference.py") << kPythonReference;
  }
  const auto cmd = std::string("OMP_NUM_THREADS=1 ") + test::reference_python() + " '" +
                   (dir / "reference.py").string() + "' '" + (dir / "in.json").string() + "' '" +
                   (dir / "out.json").string() + "'";
  auto res = test::run_command(cmd);
  ASSERT_EQ(res.exit_code, 0) << cmd << "\n" << res.out << res.err;
  std::ifstream in(dir / "out.json");
  const auto ref = nlohmann::json::parse(in);
  EXPECT_NEAR(rmse(a, b), ref["rmse"].get<double>(), 1e-9);
  EXPECT_NEAR(pearson(a, b), ref["pearson"].get<double>(), 1e-9);
  EXPECT_NEAR(spearman(a, b), ref["spearman"].get<double>(), 1e-9);
  EXPECT_NEAR(concordance(a, b), ref["ccc"].get<double>(), 1e-9);
  EXPECT_NEAR(auroc(score, label), ref["auroc"].get<double>(), 1e-9);
  EXPECT_NEAR(expected_calibration_error(prob, label), ref["ece"].get<double>(), 1e-9);
  EXPECT_NEAR(brier_score(prob, label), ref["brier"].get<double>(), 1e-9);
  EXPECT_NEAR(prediction_rejection_ratio(unc, correct), ref["prr"].get<double>(), 1e-9);

  LogisticOptions lo;
  lo.l2 = l2;
  const auto m = fit_logistic(x, label, {"z", "w", "zw"}, lo);
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_NEAR(m.coef[k], ref["coef"][k].get<double>(), 1e-5) << k;
    EXPECT_NEAR(m.mean[k], ref["mean"][k].get<double>(), 1e-9) << k;
    EXPECT_NEAR(m.std[k], ref["std"][k].get<double>(), 1e-9) << k;
  }
  EXPECT_NEAR(m.intercept, ref["intercept"].get<double>(), 1e-5);
}

TEST(Logistic, PredictsAndRoundTripsThroughJson) {
  // One feature, labels follow it: higher x -> y = 1 more often.
  std::vector<std::vector<double>> x;
  std::vector<int> y;
  for (int i = 0; i < 40; ++i) {
    x.push_back({static_cast<double>(i)});
    y.push_back(i >= 20 ? (i % 7 != 0) : (i % 5 == 0));
  }
  const auto m = fit_logistic(x, y, {"eu_mean"});
  EXPECT_GT(m.coef[0], 0);
  EXPECT_GT(m.predict({35.0}), 0.8);
  EXPECT_LT(m.predict({2.0}), 0.2);
  // Calibrated: mean prediction equals the base rate at the optimum (intercept unpenalised).
  double sum_p = 0, sum_y = 0;
  for (size_t i = 0; i < x.size(); ++i) sum_p += m.predict(x[i]), sum_y += y[i];
  EXPECT_NEAR(sum_p, sum_y, 1e-8);

  const auto dir = test::scratch_dir("eval_logistic");
  m.save(dir / "calibration.json");
  const auto back = LogisticModel::load(dir / "calibration.json");
  EXPECT_EQ(back.feature, m.feature);
  EXPECT_DOUBLE_EQ(back.predict({13.0}), m.predict({13.0}));
  const auto j = nlohmann::json::parse(std::ifstream(dir / "calibration.json"));
  for (const char* key : {"feature", "coef", "intercept", "mean", "std"})
    EXPECT_TRUE(j.contains(key)) << key;
  // A single feature name as a plain string is accepted too.
  auto single = j;
  single["feature"] = "eu_mean";
  EXPECT_EQ(LogisticModel::from_json(single, "x").feature, std::vector<std::string>{"eu_mean"});
  auto bad = j;
  bad["std"] = {0.0};
  EXPECT_THROW(LogisticModel::from_json(bad, "bad.json"), Error);
  EXPECT_THROW(fit_logistic({{1.0}, {2.0, 3.0}}, {0, 1}, {}), Error);
  // Separable data stays finite thanks to the L2 term.
  const auto sep = fit_logistic({{0.0}, {1.0}, {2.0}, {3.0}}, {0, 0, 1, 1}, {});
  EXPECT_TRUE(std::isfinite(sep.coef[0]));
}

// --- tokenizer and models -----------------------------------------------------------------------

std::vector<std::string> corpus(size_t n) {
  auto s = generate_task(TaskOptions{}, n, 20);
  std::vector<std::string> texts;
  for (const auto& p : s.train) texts.push_back(training_text(p));
  for (const auto& p : s.test) texts.push_back(training_text(p));
  return texts;
}

TEST(BpeTrainer, TokenizerRoundTripsTheCorpus) {
  const auto texts = corpus(600);
  BpeOptions o;
  o.vocab_size = 512;
  const std::vector<std::string> train(texts.begin(), texts.begin() + 600);
  const GgufVocab v = train_bpe_vocab(train, o);
  ASSERT_EQ(v.tokens.size(), 512u);
  EXPECT_EQ(v.tokens[0], "<unk>");
  EXPECT_EQ(v.tokens[1], "<s>");
  EXPECT_EQ(v.tokens[2], "</s>");
  EXPECT_EQ(v.tokens[3 + 0x41], "<0x41>");
  auto tok = tokenizer_from_gguf_vocab(v);
  size_t chars = 0, ids = 0;
  for (const auto& t : texts) {  // includes held-out test problems
    const auto enc = tok->encode(t, true);
    ASSERT_EQ(enc[0], 1);
    ASSERT_EQ(tok->decode(enc, true), t);
    for (auto id : enc) ASSERT_NE(id, 0) << "no <unk> on the corpus";
    chars += t.size(), ids += enc.size();
  }
  EXPECT_GT(static_cast<double>(chars) / static_cast<double>(ids), 2.0) << "compression";
  // Digits stay single tokens; unseen characters fall back to bytes and round-trip.
  for (auto id : tok->encode("12345", false)) {
    const std::string piece = tok->token_bytes(id);
    EXPECT_LE(piece.find_first_of("0123456789") == std::string::npos ? 0 : 1, 1);
    size_t digits = 0;
    for (char c : piece) digits += std::isdigit(static_cast<unsigned char>(c)) != 0;
    EXPECT_LE(digits, 1u) << piece;
  }
  const std::string odd = "Zoë paid €5 {ok} ~ \t\n";
  EXPECT_EQ(tok->decode(tok->encode(odd, false), true), odd);
  // Frequent words became single pieces.
  EXPECT_TRUE(tok->token_id("\xE2\x96\x81Question").has_value());
  // Training is deterministic.
  EXPECT_EQ(train_bpe_vocab(train, o).tokens, v.tokens);
}

// A testbed small enough for a unit test: `problems` training problems, a target and a draft of
// the given shapes trained for the given steps, silent.
TestbedOptions small_testbed(size_t problems, size_t test, int64_t vocab, ModelShape target,
                             int64_t target_steps, ModelShape draft, int64_t draft_steps) {
  TestbedOptions o;
  o.n_train = problems;
  o.n_test = o.eval_problems = test;
  o.bpe.vocab_size = static_cast<int>(vocab);
  o.target_shape = target;
  o.target_train.steps = target_steps;
  o.target_train.batch_size = 8;
  o.target_train.warmup = std::min<int64_t>(5, target_steps / 4);
  o.target_train.log_every = 0;
  o.drafts[0].shape = draft;
  o.drafts[0].train.steps = draft_steps;
  o.drafts[0].train.batch_size = 4;
  o.drafts[0].train.warmup = 1;
  o.drafts[0].train.log_every = 0;
  return o;
}

TEST(TestbedModels, PretrainingLowersTheLossAndTheTestbedIsCached) {
  torch::set_num_threads(2);
  const TestbedOptions o = small_testbed(120, 8, 384, {32, 64, 1, 2, 2}, 40, {16, 32, 1, 2, 2}, 4);
  const auto cache = test::scratch_dir("eval_testbed_cache");
  const auto tb = build_testbed(o, cache);
  EXPECT_FALSE(tb.from_cache);
  const auto& target = tb.info.at("target");
  EXPECT_LT(target.at("final_loss").get<double>(), std::log(384.0) - 1.0);
  ASSERT_TRUE(std::filesystem::exists(tb.target_dir / "config.json"));
  ASSERT_TRUE(std::filesystem::exists(tb.draft_dirs.at(0) / "config.json"));
  ASSERT_TRUE(std::filesystem::exists(tb.test_jsonl));
  EXPECT_EQ(read_gsm8k_jsonl(tb.test_jsonl).size(), 8u);
  // The saved model carries its tokenizer and reproduces the recorded accuracy.
  auto m = load_model(tb.target_dir);
  ASSERT_TRUE(m.tokenizer);
  EXPECT_EQ(m.tokenizer->vocab_size(), 384);
  auto data = generate_task(o.task, o.n_train, o.n_test);
  auto acc = evaluate_accuracy(*m.model, *m.tokenizer, data.test);
  EXPECT_DOUBLE_EQ(acc.accuracy, target.at("accuracy").get<double>());
  EXPECT_EQ(acc.responses.size(), 8u);
  // Second build: reused, nothing left behind in temp dirs.
  const auto again = build_testbed(o, cache);
  EXPECT_TRUE(again.from_cache);
  EXPECT_EQ(again.dir, tb.dir);
  const auto entries = std::distance(std::filesystem::directory_iterator(cache),
                                     std::filesystem::directory_iterator{});
  EXPECT_EQ(entries, 1);
  // A different config gets its own directory.
  auto o2 = o;
  o2.target_train.seed += 1;
  EXPECT_NE(o2.key(), o.key());
}

// A draft pruned from the target starts as the target's first and last layers with its embeddings
// and head (checked against the saved target's tensors); a draft of another width is refused by
// name.
TEST(TestbedModels, PrunedDraftStartsFromTheTargetsOuterLayers) {
  torch::set_num_threads(2);
  TestbedOptions o = small_testbed(60, 4, 320, {32, 64, 3, 2, 2}, 6, {32, 64, 2, 2, 2}, 1);
  o.drafts[0].init_from_target = true;
  o.drafts[0].train.lr = 1e-12;  // one step that moves nothing measurable
  const auto cache = test::scratch_dir("eval_testbed_pruned");
  const auto tb = build_testbed(o, cache);
  EXPECT_TRUE(tb.info.at("drafts").at(0).at("pruned_from_target").get<bool>());
  const auto target = load_model(tb.target_dir).model->hf_state();
  const auto draft = load_model(tb.draft_dirs.at(0)).model->hf_state();
  const std::map<std::string, std::string> source{
      {"model.embed_tokens.weight", "model.embed_tokens.weight"},
      {"model.norm.weight", "model.norm.weight"},
      {"lm_head.weight", "lm_head.weight"},
      {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.weight"},
      {"model.layers.1.self_attn.q_proj.weight", "model.layers.2.self_attn.q_proj.weight"},
      {"model.layers.1.mlp.down_proj.weight", "model.layers.2.mlp.down_proj.weight"},
      {"model.layers.1.post_attention_layernorm.weight",
       "model.layers.2.post_attention_layernorm.weight"}};
  for (const auto& [d, t] : source) {
    ASSERT_TRUE(draft.count(d) && target.count(t)) << d;
    EXPECT_TRUE(torch::allclose(draft.at(d), target.at(t), 1e-5, 1e-7)) << d << " vs " << t;
  }
  // The middle layer was dropped: the draft's layer 1 is not the target's layer 1.
  EXPECT_FALSE(torch::allclose(draft.at("model.layers.1.self_attn.q_proj.weight"),
                               target.at("model.layers.1.self_attn.q_proj.weight"), 1e-3, 1e-5));
  auto narrow = o;
  narrow.drafts[0].shape = {16, 32, 2, 2, 2};
  EXPECT_THROW(
      {
        try {
          build_testbed(narrow, cache);
        } catch (const std::exception& e) {
          EXPECT_NE(std::string(e.what()).find("draft 'draft'"), std::string::npos) << e.what();
          EXPECT_NE(std::string(e.what()).find("width"), std::string::npos) << e.what();
          throw;
        }
      },
      std::exception);
}

// A model with weights of every kind nonzero and away from init: matrices N(0, 0.06), norm
// weights in [0.5, 1.5] (a trained model's norms are not ones).
LlamaForCausalLM trained_looking(const LlamaConfig& c, uint64_t seed) {
  auto m = init_model(c, seed);
  torch::NoGradGuard ng;
  for (auto& p : m->parameters()) {
    if (p.dim() >= 2)
      p.mul_(3.0);
    else
      p.uniform_(0.5, 1.5);
  }
  return m;
}

TEST(TestbedModels, WidenedModelComputesTheSameLogits) {
  torch::set_num_threads(2);
  // hidden 96 = 4 heads of 24, 2 key/value heads (GQA), intermediate 256, vocabulary 61.
  const auto c = testbed_config({96, 256, 2, 4, 2}, 61, 64);
  auto small = trained_looking(c, 3);
  auto wide = widen_llama(*small, 384, 11, "test model");
  const auto& w = wide->config();
  EXPECT_EQ(w.hidden_size, 384);
  EXPECT_EQ(w.head_dim, 24);
  EXPECT_EQ(w.num_attention_heads, 16);
  EXPECT_EQ(w.num_key_value_heads, 8);
  EXPECT_EQ(w.intermediate_size, 1024);
  EXPECT_EQ(w.num_hidden_layers, 2);
  EXPECT_EQ(w.vocab_size, 61);
  EXPECT_DOUBLE_EQ(w.rms_norm_eps, c.rms_norm_eps / 4);
  // By hand: per layer q and o 384x384, k and v 384x192, gate/up/down 384x1024, two norms;
  // embeddings and lm_head 61x384, the final norm.
  const int64_t per_layer = 2 * 384 * 384 + 2 * 384 * 192 + 3 * 384 * 1024 + 2 * 384;
  const int64_t expected = 2 * per_layer + 2 * 61 * 384 + 384;
  int64_t counted = 0;
  for (const auto& p : wide->parameters()) counted += p.numel();
  EXPECT_EQ(counted, expected);
  EXPECT_EQ(w.num_parameters(), expected);

  // The same logits on random sequences, through the fused kernels and the module path.
  std::mt19937_64 rng(5);
  torch::NoGradGuard ng;
  for (const bool fast : {true, false}) {
    set_fast_forward_enabled(fast);
    for (int64_t len : {1, 7, 40}) {
      std::vector<int64_t> seq{1};
      while (static_cast<int64_t>(seq.size()) < len)
        seq.push_back(3 + static_cast<int64_t>(rng() % 58));
      const auto ids = torch::tensor(seq).unsqueeze(0);
      const auto a = small->forward(ids), b = wide->forward(ids);
      const double scale = a.abs().max().item<double>();
      EXPECT_GT(scale, 1.0);  // logits of a model far from uniform
      EXPECT_LE((a - b).abs().max().item<double>(), 1e-4 * scale)
          << "fast " << fast << ", length " << len;
    }
  }
  set_fast_forward_enabled(true);

  const auto from = small->hf_state(), to = wide->hf_state();
  auto zero = [](const torch::Tensor& t) { return t.abs().max().item<double>() == 0.0; };
  // Dense: the new reading entries are drawn at about the tensor's own scale.
  auto dense = [&](const torch::Tensor& t, const std::string& key) {
    const double rms = from.at(key).pow(2).mean().sqrt().item<double>();
    const double got = t.pow(2).mean().sqrt().item<double>();
    return (t != 0).to(torch::kFloat64).mean().item<double>() > 0.99 && got > 0.8 * rms &&
           got < 1.25 * rms;
  };
  for (const auto& [key, t] : to) {
    auto block = t;
    for (int64_t d = 0; d < t.dim(); ++d) block = block.narrow(d, 0, from.at(key).size(d));
    if (t.dim() == 2) {
      EXPECT_TRUE(torch::equal(block, from.at(key))) << key;
    }
  }
  EXPECT_TRUE(torch::allclose(to.at("model.norm.weight").narrow(0, 0, 96),
                              from.at("model.norm.weight") * 0.5));
  EXPECT_TRUE(zero(to.at("model.embed_tokens.weight").narrow(1, 96, 288)));
  EXPECT_TRUE(dense(to.at("lm_head.weight").narrow(1, 96, 288), "lm_head.weight"));
  for (const std::string l : {"model.layers.0.", "model.layers.1."}) {
    const auto o = to.at(l + "self_attn.o_proj.weight"), down = to.at(l + "mlp.down_proj.weight");
    EXPECT_TRUE(zero(o.narrow(0, 96, 288)) && zero(o.narrow(1, 96, 288))) << l;
    EXPECT_TRUE(zero(down.narrow(0, 96, 288)) && zero(down.narrow(1, 256, 768))) << l;
    for (const std::string m : {"self_attn.q_proj", "mlp.gate_proj", "mlp.up_proj"}) {
      const auto t = to.at(l + m + ".weight");
      const auto rows = from.at(l + m + ".weight").size(0);
      EXPECT_TRUE(dense(t.narrow(0, rows, t.size(0) - rows), l + m + ".weight")) << l << m;
      EXPECT_TRUE(dense(t.narrow(1, 96, 288), l + m + ".weight")) << l << m;
    }
    for (const std::string m : {"self_attn.k_proj", "self_attn.v_proj"}) {
      const auto t = to.at(l + m + ".weight");
      EXPECT_TRUE(dense(t.narrow(0, 48, 144), l + m + ".weight")) << l << m;
      EXPECT_TRUE(dense(t.narrow(1, 96, 288), l + m + ".weight")) << l << m;
    }
  }
}

TEST(TestbedModels, WideningRefusesAWidthThatIsNotWholeHeads) {
  auto small = init_model(testbed_config({96, 256, 1, 4, 2}, 61, 64), 3);
  for (const int64_t bad : {100, 48, 120}) {  // not 24-aligned, narrower, 2.5 key/value heads
    EXPECT_THROW(
        {
          try {
            widen_llama(*small, bad, 1, "the small model");
          } catch (const std::exception& e) {
            const std::string what = e.what();
            EXPECT_NE(what.find("the small model"), std::string::npos) << what;
            EXPECT_NE(what.find("to " + std::to_string(bad)), std::string::npos) << what;
            throw;
          }
        },
        std::exception);
  }
}

TEST(TestbedModels, PretrainStepsReduceLossOnAFixedBatch) {
  torch::set_num_threads(2);
  const auto texts = corpus(64);
  auto tok = tokenizer_from_gguf_vocab(train_bpe_vocab(texts, {320, 2, true}));
  std::vector<std::vector<int64_t>> seqs;
  for (const auto& t : texts) {
    auto ids = tok->encode(t, true);
    seqs.emplace_back(ids.begin(), ids.end());
  }
  auto model = init_model(testbed_config({32, 64, 1, 2, 2}, tok->vocab_size(), 256), 3);
  PretrainOptions po;
  po.steps = 30;
  po.batch_size = 8;
  po.warmup = 3;
  po.log_every = 0;
  const auto stats = pretrain(*model, seqs, po);
  ASSERT_EQ(stats.losses.size(), 30u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i)
    first += stats.losses[static_cast<size_t>(i)],
        last += stats.losses[25 + static_cast<size_t>(i)];
  EXPECT_LT(last, first - 5 * 1.0);
  EXPECT_NEAR(stats.losses[0], std::log(320.0), 0.3);  // N(0, 0.02) init starts near uniform
  // Same seed, same run.
  auto model2 = init_model(testbed_config({32, 64, 1, 2, 2}, tok->vocab_size(), 256), 3);
  EXPECT_EQ(pretrain(*model2, seqs, po).losses, stats.losses);
}

// Six encoded corpus texts whose loss counts from each sequence's middle on.
struct HalfLossCorpus {
  std::unique_ptr<Tokenizer> tok;
  std::vector<std::vector<int64_t>> seqs;
  std::vector<size_t> loss_from;
};
HalfLossCorpus half_loss_corpus() {
  HalfLossCorpus c;
  const auto texts = corpus(6);
  c.tok = tokenizer_from_gguf_vocab(train_bpe_vocab(texts, {320, 2, true}));
  for (const auto& t : texts) {
    auto ids = c.tok->encode(t, true);
    c.seqs.emplace_back(ids.begin(), ids.end());
    c.loss_from.push_back(c.seqs.back().size() / 2);
  }
  return c;
}

// The answer-only loss: step 0's loss (before any update) equals the cross-entropy over exactly
// the tokens from loss_from on, computed here sequence by sequence; the token count matches.
TEST(TestbedModels, AnswerOnlyLossCountsOnlyTokensFromLossFrom) {
  const auto [tok, seqs, loss_from] = half_loss_corpus();
  auto model = init_model(testbed_config({32, 64, 1, 2, 2}, tok->vocab_size(), 256), 5);
  double nll = 0;
  int64_t counted = 0;
  {
    torch::NoGradGuard ng;
    for (size_t i = 0; i < seqs.size(); ++i) {
      auto logp = torch::log_softmax(model->forward(torch::tensor(seqs[i]).unsqueeze(0))[0], -1)
                      .to(torch::kFloat64);
      for (size_t k = loss_from[i]; k < seqs[i].size(); ++k, ++counted)
        nll -= logp[static_cast<int64_t>(k) - 1][seqs[i][k]].item<double>();
    }
  }
  PretrainOptions po;
  po.steps = 1;
  po.batch_size = static_cast<int64_t>(seqs.size());  // one step sees every sequence once
  po.log_every = 0;
  po.warmup = 1;
  const auto stats = pretrain(*model, seqs, po, nullptr, "m", loss_from);
  EXPECT_EQ(stats.tokens, counted);
  EXPECT_NEAR(stats.losses[0], nll / static_cast<double>(counted), 1e-5);
  EXPECT_THROW(pretrain(*model, seqs, po, nullptr, "m", {1, 2}), Error);  // one per sequence
}

// Knowledge distillation: step 0's loss equals Σ p_T (log p_T − log q) averaged over the loss
// tokens, computed here sequence by sequence in float64; and KD moves the student towards the
// teacher (the KL falls well below where cross-entropy training alone leaves it).
TEST(TestbedModels, DistillationLossIsTheForwardKLToTheTeacher) {
  const auto [tok, seqs, loss_from] = half_loss_corpus();
  auto teacher = init_model(testbed_config({32, 64, 1, 2, 2}, tok->vocab_size(), 256), 7);
  {  // a teacher far from uniform
    torch::NoGradGuard ng;
    teacher->backbone->norm->weight.mul_(40.0);
  }
  auto student = init_model(testbed_config({16, 48, 1, 2, 2}, tok->vocab_size(), 256), 8);
  auto mean_kl = [&] {
    torch::NoGradGuard ng;
    double kl = 0;
    int64_t n = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const auto ids = torch::tensor(seqs[i]).unsqueeze(0);
      const auto lt = torch::log_softmax(teacher->forward(ids)[0], -1).to(torch::kFloat64);
      const auto ls = torch::log_softmax(student->forward(ids)[0], -1).to(torch::kFloat64);
      for (size_t k = loss_from[i]; k < seqs[i].size(); ++k, ++n) {
        const auto r = static_cast<int64_t>(k) - 1;
        kl += (lt[r].exp() * (lt[r] - ls[r])).sum().item<double>();
      }
    }
    return kl / static_cast<double>(n);
  };
  const double kl0 = mean_kl();
  PretrainOptions po;
  po.steps = 1;
  po.batch_size = static_cast<int64_t>(seqs.size());
  po.log_every = 0;
  po.warmup = 1;
  const PretrainTeacher kd{teacher.get(), 0.0};
  auto fresh = [&] {
    return init_model(testbed_config({16, 48, 1, 2, 2}, tok->vocab_size(), 256), 8);
  };
  auto probe = fresh();
  const auto first = pretrain(*probe, seqs, po, nullptr, "s", loss_from, kd);
  EXPECT_NEAR(first.losses[0], kl0, 1e-4 * std::max(1.0, kl0));
  po.steps = 40;
  po.warmup = 2;
  po.lr = 1e-3;
  pretrain(*student, seqs, po, nullptr, "s", loss_from, kd);
  const double kl_kd = mean_kl();
  student = fresh();  // the same start, trained on the data's tokens alone
  pretrain(*student, seqs, po, nullptr, "s", loss_from);
  const double kl_ce = mean_kl();
  EXPECT_LT(kl_kd, kl0);
  EXPECT_LT(kl_kd, kl_ce) << "KD " << kl_kd << ", cross-entropy " << kl_ce << ", start " << kl0;
}

// With a teacher, batches and the teacher's log-probabilities are made on a second thread one
// step ahead. The run must stay a pure function of its seeds (batches smaller than the data, so
// their order matters), a teacher of another vocabulary is refused by name, and a teacher that
// fails mid-forward surfaces as an exception on the caller, not a hang or a crash.
TEST(TestbedModels, DistillationPrefetchIsDeterministicAndReportsTeacherFailures) {
  const auto [tok, seqs, loss_from] = half_loss_corpus();
  auto teacher = init_model(testbed_config({32, 64, 1, 2, 2}, tok->vocab_size(), 256), 7);
  auto fresh = [&] {
    return init_model(testbed_config({16, 48, 1, 2, 2}, tok->vocab_size(), 256), 8);
  };
  PretrainOptions po;
  po.steps = 7;
  po.batch_size = 2;
  po.log_every = 0;
  po.warmup = 1;
  const PretrainTeacher kd{teacher.get(), 0.0};
  auto a = fresh(), b = fresh();
  const auto ra = pretrain(*a, seqs, po, nullptr, "a", loss_from, kd);
  const auto rb = pretrain(*b, seqs, po, nullptr, "b", loss_from, kd);
  EXPECT_EQ(ra.losses, rb.losses);
  EXPECT_EQ(ra.tokens, rb.tokens);
  const auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
  // Seven steps of two sequences: the answer tokens of 14 drawn sequences.
  int64_t fewest = INT64_MAX, most = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto n = static_cast<int64_t>(seqs[i].size() - loss_from[i]);
    fewest = std::min(fewest, n);
    most = std::max(most, n);
  }
  EXPECT_GE(ra.tokens, 14 * fewest);
  EXPECT_LE(ra.tokens, 14 * most);

  auto other_vocab = init_model(testbed_config({32, 64, 1, 2, 2}, tok->vocab_size() + 1, 256), 7);
  auto c = fresh();
  try {
    pretrain(*c, seqs, po, nullptr, "c", loss_from, {other_vocab.get(), 0.0});
    ADD_FAILURE() << "a teacher of another vocabulary was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocabulary"), std::string::npos) << e.what();
  }
  auto broken = init_model(testbed_config({32, 64, 1, 2, 2}, tok->vocab_size(), 256), 7);
  {  // a float64 final norm: the float32 head's matmul fails on the prefetch thread
    torch::NoGradGuard ng;
    auto& w = broken->backbone->norm->weight;
    w.set_data(w.to(torch::kFloat64));
  }
  EXPECT_ANY_THROW(pretrain(*c, seqs, po, nullptr, "c", loss_from, {broken.get(), 0.0}));
}

// --- config JSON against goldens ----------------------------------------------------------------

// Every config JSON that manifests record and step-cache keys hash, as the code writes it now.
// tests/golden/config/ holds what the code wrote before the distill and experiment configs moved
// onto one mechanism (issue 12): a difference recomputes every cached experiment step.
std::map<std::string, nlohmann::json> produced_config_json() {
  using json = nlohmann::json;
  using namespace distill;
  std::map<std::string, json> out;
  out["train-default"] = to_json(TrainConfig{});
  out["train-osd"] = to_json(OsdConfig::default_train());
  out["train-drafts"] = to_json(DraftFamilyConfig::default_train());
  out["train-gkd"] = to_json(GkdConfig::default_train());
  out["train-minillm"] = to_json(MiniLLMConfig::default_train());
  out["train-custom"] = to_json(train_config_from_json(
      json::parse(R"({"lr": 1e-3, "weight_decay": 0, "adam_beta1": 0.8, "adam_beta2": 0.99,
        "adam_eps": 1e-6, "max_grad_norm": 0.5, "schedule": "cosine", "warmup_steps": 5,
        "warmup_ratio": 0.2, "batch_size": 3, "grad_accum": 2, "epochs": 2.5, "max_steps": 7,
        "max_seq_len": 64, "save_every": 3, "keep_checkpoints": 1, "log_every": 2, "seed": 42,
        "dtype": "bf16", "stop_after": 4})"),
      "golden", TrainConfig{}));
  out["lora-default"] = to_json(LoraConfig{});
  out["lora-osd"] = to_json(OsdConfig::default_lora());
  out["lora-drafts"] = to_json(DraftFamilyConfig::default_lora());
  out["lora-gkd"] = to_json(GkdConfig::default_lora());
  out["lora-minillm"] = to_json(MiniLLMConfig::default_lora());
  out["lora-custom"] = to_json(lora_config_from_json(
      json::parse(R"({"r": 4, "alpha": 8, "dropout": 0.05, "target_modules": ["q_proj"],
        "target_regex": "", "use_rslora": true})"),
      "golden", LoraConfig{}));
  out["on-policy-custom"] = to_json(on_policy_config_from_json(
      json::parse(R"({"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 32, "generations": 2})"),
      "golden", OnPolicyConfig{}));
  out["osd-default"] = to_json(OsdConfig{});
  out["gkd-default"] = to_json(GkdConfig{});
  out["minillm-default"] = to_json(MiniLLMConfig{});
  out["noise-target-family"] = to_json(NoiseConfig::target_family(0));
  out["noise-draft-init"] = to_json(NoiseConfig::draft_init(1));
  out["noise-tokur"] = to_json(NoiseConfig::tokur(3));
  out["noise-custom"] = to_json(noise_config_from_json(
      json::parse(R"({"kind": "lora-noise", "rank": 4, "sigma": 0.3, "alpha": 8, "seed": 5,
        "relative": true, "keep_unperturbed": true, "target_modules": ["q_proj", "v_proj"]})"),
      "golden"));
  const json custom = json::parse(R"({"seed": 9, "family": {"sigma": 1, "modules": ["q_proj"]},
      "fidelity": {"trials": 2}, "testbed": {"difficulty": 0.5, "vocab": 512},
      "detection": {"aggregate": "max"}, "train": {"draft_lr": 0.001}})");
  for (const std::string name : {"tiny", "quick", "full", "custom"}) {
    const auto c = name == "custom" ? experiment_config_from_json(custom, "quick", "golden")
                                    : experiment_config_from_json(json::object(), name, "golden");
    out["experiment-" + name] = c.json;
    // "auto" resolves per CPU: pin it so the golden holds on every machine.
    auto testbed = c.testbed.options();
    testbed.target_train.dtype = testbed.drafts.at(0).train.dtype = ComputeDtype::F32;
    out["testbed-" + name] = testbed.to_json();
  }
  return out;
}

TEST(ConfigJson, MatchesTheGoldensWrittenBeforeTheConfigMechanism) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(std::getenv("DRAFTEU_TESTS_DIR")) / "golden" / "config";
  const bool update = std::getenv("DRAFTEU_UPDATE_GOLDEN") != nullptr;
  for (const auto& [name, j] : produced_config_json()) {
    const fs::path file = dir / (name + ".json");
    // Compared as text: JSON equality would let 1 stand for 1.0, whose hash differs.
    const std::string text = j.dump(2) + "\n";
    if (update) {
      fs::create_directories(dir);
      write_file_atomic(file, text);
      continue;
    }
    ASSERT_TRUE(fs::exists(file)) << file;
    EXPECT_EQ(text, read_text_file(file)) << file;
  }
}

// --- the config mechanism (util/config_fields.h)
// --------------------------------------------------

struct ToyInner {
  int64_t n = 1;
  std::optional<double> scale;
};
struct Toy {
  std::string name = "toy";
  ToyInner inner;
  uint64_t seed = 0;
  double lr = 0.5;
  std::vector<int64_t> ks{2, 3};
  int64_t stop = 0;
};

const config::Fields<Toy>& toy_fields() {
  static const config::Fields<Toy> f = [] {
    config::Fields<ToyInner> inner;
    inner.field("n", &ToyInner::n, config::positive<int64_t>()).field("scale", &ToyInner::scale);
    config::Fields<Toy> t;
    t.field("name", &Toy::name, config::one_of({"toy", "game"}))
        .nested("inner", &Toy::inner, inner)
        .field("seed", &Toy::seed)
        .field("opt.lr", &Toy::lr, config::in_range(0.0, 1.0))
        .field("ks", &Toy::ks)
        .read_only("stop", &Toy::stop)
        .rule([](const Toy& c, const config::Where& w) {
          if (c.inner.n > static_cast<int64_t>(c.ks.size()))
            config::fail_field(w.at("inner.n"), "must not exceed the number of ks");
        });
    return t;
  }();
  return f;
}

std::string toy_error(const nlohmann::json& j, const config::Where& where = {"cfg.json"}) {
  try {
    toy_fields().from_json(j, where, Toy{});
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(ConfigFields, WritesNestedJsonAndReadsItBack) {
  Toy t;
  t.inner.n = 2;
  t.stop = 7;
  const auto j = toy_fields().to_json(t);
  // Hand-written: dotted keys nest, the unset optional and the read-only field are left out.
  EXPECT_EQ(j.dump(), R"({"inner":{"n":2},"ks":[2,3],"name":"toy","opt":{"lr":0.5},"seed":0})");
  t.inner.scale = 4.0;
  EXPECT_EQ(toy_fields().to_json(t)["inner"].dump(), R"({"n":2,"scale":4.0})");
  const Toy back = toy_fields().from_json(
      nlohmann::json::parse(R"({"name": "game", "inner": {"scale": 3, "n": 1}, "opt": {"lr": 0.25},
                               "seed": 18446744073709551615, "ks": [5], "stop": 4})"),
      "cfg.json", Toy{});
  EXPECT_EQ(back.name, "game");
  EXPECT_EQ(back.inner.n, 1);
  EXPECT_EQ(back.inner.scale, 3.0);
  EXPECT_EQ(back.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_DOUBLE_EQ(back.lr, 0.25);
  EXPECT_EQ(back.ks, std::vector<int64_t>{5});
  EXPECT_EQ(back.stop, 4);
  // Absent fields and nulls keep the defaults.
  const Toy same = toy_fields().from_json(
      nlohmann::json::parse(R"({"inner": null, "opt": {"lr": null}})"), "cfg.json", Toy{});
  EXPECT_EQ(toy_fields().to_json(same), toy_fields().to_json(Toy{}));
}

TEST(ConfigFields, ErrorsNameTheSourceAndTheFieldPath) {
  using nlohmann::json;
  // Unknown fields, at the top and nested.
  EXPECT_EQ(toy_error(json{{"nmae", "x"}}), "cfg.json: unknown field 'nmae'");
  EXPECT_EQ(toy_error(json{{"inner", {{"m", 1}}}}), "cfg.json: unknown field 'inner.m'");
  EXPECT_EQ(toy_error(json{{"opt", {{"lr", 0.1}, {"beta", 1}}}}),
            "cfg.json: unknown field 'opt.beta'");
  // Wrong types: integers are strict (2.5 and -1 are not a count or a seed).
  EXPECT_EQ(toy_error(json{{"inner", {{"n", "x"}}}}),
            "cfg.json: field 'inner.n' must be an integer (got \"x\")");
  EXPECT_EQ(toy_error(json{{"inner", {{"n", 2.5}}}}),
            "cfg.json: field 'inner.n' must be an integer (got 2.5)");
  EXPECT_EQ(toy_error(json{{"seed", -1}}),
            "cfg.json: field 'seed' must be an integer >= 0 (got -1)");
  EXPECT_EQ(toy_error(json{{"opt", {{"lr", true}}}}),
            "cfg.json: field 'opt.lr' must be a number (got true)");
  EXPECT_EQ(toy_error(json{{"ks", {1, "2"}}}),
            "cfg.json: field 'ks.1' must be an integer (got \"2\")");
  EXPECT_EQ(toy_error(json{{"inner", 3}}), "cfg.json: field 'inner' must be a JSON object (got 3)");
  EXPECT_EQ(toy_error(json::array()),
            "cfg.json: expected a JSON object (got an array of 0 elements)");
  // Out of range, by a field's check and by a rule across fields.
  EXPECT_EQ(toy_error(json{{"inner", {{"n", 0}}}}),
            "cfg.json: field 'inner.n' must be positive (got 0)");
  EXPECT_EQ(toy_error(json{{"opt", {{"lr", 1.5}}}}),
            "cfg.json: field 'opt.lr' must lie in [0, 1] (got 1.5)");
  EXPECT_EQ(toy_error(json{{"name", "x"}}),
            "cfg.json: field 'name' must be one of toy, game (got \"x\")");
  EXPECT_EQ(toy_error(json{{"inner", {{"n", 3}}}}),
            "cfg.json: field 'inner.n' must not exceed the number of ks");
  // A section read on its own names its path in the file.
  EXPECT_EQ(toy_error(json{{"inner", {{"n", 0}}}}, {"cfg.json", "toy"}),
            "cfg.json: field 'toy.inner.n' must be positive (got 0)");
  EXPECT_EQ(toy_error(json{{"x", 0}}, {"cfg.json", "toy"}), "cfg.json: unknown field 'toy.x'");
}

TEST(ConfigFields, OverlayKeepsTheValuesAsWrittenAndSkipsNulls) {
  const auto base = nlohmann::json::parse(R"({"a": {"x": 1.0, "y": 2}, "b": "s"})");
  const auto patch = nlohmann::json::parse(R"({"a": {"x": 3, "y": null}, "b": "t"})");
  EXPECT_EQ(config::overlay(base, patch).dump(), R"({"a":{"x":3,"y":2},"b":"t"})");
}

TEST(ConfigFields, DistillAndExperimentConfigsNameTheFieldPath) {
  using nlohmann::json;
  auto error_of = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of([] {
              distill::train_config_from_json(json{{"lr", 0}}, {"cfg.json", "train"},
                                              distill::TrainConfig{});
            }),
            "cfg.json: field 'train.lr' must be positive (got 0.0)");
  EXPECT_EQ(error_of([] {
              distill::train_config_from_json(json{{"batch_size", 1.5}}, {"cfg.json", "train"},
                                              distill::TrainConfig{});
            }),
            "cfg.json: field 'train.batch_size' must be an integer (got 1.5)");
  EXPECT_EQ(error_of([] {
              distill::gkd_config_from_json(json{{"lora", {{"rank", 4}}}}, {"cfg.json", "gkd"},
                                            distill::GkdConfig{});
            }),
            "cfg.json: unknown field 'gkd.lora.rank'");
  EXPECT_EQ(error_of([] {
              distill::osd_config_from_json(json{{"teacher_noise", {{"kind", "gauss"}}}},
                                            "cfg.json", distill::OsdConfig{});
            }).find("cfg.json: field 'teacher_noise.kind' "),
            0u);
  // The programmatic check names the field too.
  distill::TrainConfig tc;
  tc.schedule.warmup_ratio = 2;
  EXPECT_EQ(error_of([&] { tc.validate("training config"); }),
            "training config: field 'warmup_ratio' must lie in [0, 1] (got 2.0)");
  EXPECT_EQ(error_of([] {
              experiment_config_from_json(json{{"family", {{"sigma", 11}}}}, "quick", "e.json");
            }),
            "e.json: field 'family.sigma' must lie in [0, 10] (got 11.0)");
  EXPECT_EQ(error_of([] {
              experiment_config_from_json(json{{"testbed", {{"min_steps", 4}, {"max_steps", 3}}}},
                                          "quick", "e.json");
            }),
            "e.json: field 'testbed.max_steps' must be at least min_steps (4; got 3)");
  EXPECT_EQ(
      error_of([] {
        experiment_config_from_json(json{{"testbed", {{"draft_hidden", 64}}}}, "quick", "e.json");
      }),
      "e.json: field 'testbed.draft_init' 'target_layers' prunes the target in depth, so "
      "draft_hidden must equal target_hidden (96; got 64); set it to 'random' for a "
      "narrower draft");
  EXPECT_NO_THROW(experiment_config_from_json(
      json{{"testbed", {{"draft_hidden", 64}, {"draft_init", "random"}}}}, "quick", "e.json"));
  EXPECT_EQ(error_of([] {
              experiment_config_from_json(json{{"proxy", {{"k", {3, 1}}}}}, "tiny", "e.json");
            }),
            "e.json: field 'proxy.k' must list Ks of at least 2 (got an array of 2 elements)");
  EXPECT_EQ(error_of([] {
              experiment_config_from_json(json{{"testbed", {{"dtype", "fp8"}}}}, "quick", "e.json");
            }),
            "e.json: field 'testbed.dtype' must be one of f32, bf16, auto (got \"fp8\")");
}

}  // namespace
}  // namespace drafteu::eval
