#include "stats/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "util/error.h"

namespace drafteu::stats {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_sizes(const char* what, size_t a, size_t b) {
  if (a != b) fail(what, ": inputs have different lengths (", a, " and ", b, ")");
  if (a == 0) fail(what, ": inputs are empty");
}

void check_labels(const char* what, const std::vector<int>& label) {
  for (int y : label)
    if (y != 0 && y != 1) fail(what, ": labels must be 0 or 1, got ", y);
}

// Population covariance terms.
struct Moments {
  double ma, mb, va, vb, cov;
};
Moments moments(const std::vector<double>& a, const std::vector<double>& b) {
  Moments m{mean(a), mean(b), 0, 0, 0};
  for (size_t i = 0; i < a.size(); ++i) {
    const double da = a[i] - m.ma, db = b[i] - m.mb;
    m.va += da * da, m.vb += db * db, m.cov += da * db;
  }
  const auto n = static_cast<double>(a.size());
  m.va /= n, m.vb /= n, m.cov /= n;
  return m;
}
}  // namespace

double mean(const std::vector<double>& x) {
  if (x.empty()) fail("mean: input is empty");
  return std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(x.size());
}

double rmse(const std::vector<double>& a, const std::vector<double>& b) {
  check_sizes("rmse", a.size(), b.size());
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(s / static_cast<double>(a.size()));
}

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  check_sizes("pearson", a.size(), b.size());
  const Moments m = moments(a, b);
  if (m.va <= 0 || m.vb <= 0) return kNaN;
  return m.cov / std::sqrt(m.va * m.vb);
}

std::vector<double> average_ranks(const std::vector<double>& x) {
  std::vector<size_t> order(x.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t i, size_t j) { return x[i] < x[j]; });
  std::vector<double> r(x.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && x[order[j + 1]] == x[order[i]]) ++j;
    const double avg = 0.5 * static_cast<double>(i + j) + 1.0;
    for (size_t k = i; k <= j; ++k) r[order[k]] = avg;
    i = j + 1;
  }
  return r;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  check_sizes("spearman", a.size(), b.size());
  return pearson(average_ranks(a), average_ranks(b));
}

double concordance(const std::vector<double>& a, const std::vector<double>& b) {
  check_sizes("concordance", a.size(), b.size());
  const Moments m = moments(a, b);
  const double den = m.va + m.vb + (m.ma - m.mb) * (m.ma - m.mb);
  return den > 0 ? 2 * m.cov / den : kNaN;
}

double auroc(const std::vector<double>& score, const std::vector<int>& label) {
  check_sizes("auroc", score.size(), label.size());
  check_labels("auroc", label);
  const auto r = average_ranks(score);
  double pos = 0, rank_sum = 0;
  for (size_t i = 0; i < r.size(); ++i)
    if (label[i] == 1) pos += 1, rank_sum += r[i];
  const double neg = static_cast<double>(r.size()) - pos;
  if (pos == 0 || neg == 0) return kNaN;
  return (rank_sum - pos * (pos + 1) / 2) / (pos * neg);
}

double expected_calibration_error(const std::vector<double>& prob, const std::vector<int>& label,
                                  int bins) {
  check_sizes("ece", prob.size(), label.size());
  check_labels("ece", label);
  if (bins < 1) fail("ece: bins must be positive");
  std::vector<double> count(static_cast<size_t>(bins)), sum_p(count.size()), sum_y(count.size());
  for (size_t i = 0; i < prob.size(); ++i) {
    if (!(prob[i] >= 0 && prob[i] <= 1)) fail("ece: probability ", prob[i], " outside [0, 1]");
    const int b = std::min(bins - 1, static_cast<int>(prob[i] * bins));
    count[static_cast<size_t>(b)] += 1;
    sum_p[static_cast<size_t>(b)] += prob[i];
    sum_y[static_cast<size_t>(b)] += label[i];
  }
  double ece = 0;
  for (size_t b = 0; b < count.size(); ++b)
    if (count[b] > 0) ece += std::fabs(sum_y[b] - sum_p[b]);  // = count * |mean y - mean p|
  return ece / static_cast<double>(prob.size());
}

double brier_score(const std::vector<double>& prob, const std::vector<int>& label) {
  check_sizes("brier", prob.size(), label.size());
  check_labels("brier", label);
  double s = 0;
  for (size_t i = 0; i < prob.size(); ++i) s += (prob[i] - label[i]) * (prob[i] - label[i]);
  return s / static_cast<double>(prob.size());
}

double prediction_rejection_ratio(const std::vector<double>& uncertainty,
                                  const std::vector<int>& correct) {
  check_sizes("prr", uncertainty.size(), correct.size());
  check_labels("prr", correct);
  const size_t n = correct.size();
  const double total_correct = std::accumulate(correct.begin(), correct.end(), 0.0);
  if (total_correct == 0 || total_correct == static_cast<double>(n)) return kNaN;
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t i, size_t j) { return uncertainty[i] > uncertainty[j]; });
  // Expected number of correct answers among the first k rejected, for k = 0..n-1.
  std::vector<double> rejected_correct(n + 1, 0.0);
  for (size_t i = 0; i < n;) {
    size_t j = i;
    double group_correct = 0;
    while (j < n && uncertainty[order[j]] == uncertainty[order[i]])
      group_correct += correct[order[j++]];
    const double g = static_cast<double>(j - i);
    for (size_t k = i + 1; k <= j; ++k)
      rejected_correct[k] = rejected_correct[i] + group_correct * static_cast<double>(k - i) / g;
    i = j;
  }
  double area_unc = 0, area_oracle = 0;
  for (size_t k = 0; k < n; ++k) {
    const double kept = static_cast<double>(n - k);
    area_unc += (total_correct - rejected_correct[k]) / kept;
    area_oracle += std::min(total_correct, kept) / kept;
  }
  const double area_random = total_correct / static_cast<double>(n) * static_cast<double>(n);
  return (area_unc - area_random) / (area_oracle - area_random);
}

MeanStd mean_std(const std::vector<double>& x) {
  MeanStd r;
  r.mean = mean(x);
  if (x.size() < 2) return r;
  double s = 0;
  for (double v : x) s += (v - r.mean) * (v - r.mean);
  r.std = std::sqrt(s / static_cast<double>(x.size() - 1));
  return r;
}

}  // namespace drafteu::stats
