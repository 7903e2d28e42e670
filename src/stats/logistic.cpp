#include "stats/logistic.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/json.h"
#include "util/file.h"

namespace drafteu::stats {

namespace {

double sigmoid(double z) {
  return z >= 0 ? 1 / (1 + std::exp(-z)) : std::exp(z) / (1 + std::exp(z));
}

// log(1 + e^z), stable.
double softplus(double z) {
  return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z));
}

// Solves A x = b for a symmetric positive definite A (Cholesky); A is small (features + 1).
std::vector<double> solve_spd(std::vector<std::vector<double>> a, std::vector<double> b) {
  const size_t n = b.size();
  for (size_t j = 0; j < n; ++j) {
    double d = a[j][j];
    for (size_t k = 0; k < j; ++k) d -= a[j][k] * a[j][k];
    if (!(d > 0)) fail("logistic regression: the Hessian is not positive definite");
    a[j][j] = std::sqrt(d);
    for (size_t i = j + 1; i < n; ++i) {
      double s = a[i][j];
      for (size_t k = 0; k < j; ++k) s -= a[i][k] * a[j][k];
      a[i][j] = s / a[j][j];
    }
  }
  for (size_t i = 0; i < n; ++i) {  // L y = b
    for (size_t k = 0; k < i; ++k) b[i] -= a[i][k] * b[k];
    b[i] /= a[i][i];
  }
  for (size_t i = n; i-- > 0;) {  // L^T x = y
    for (size_t k = i + 1; k < n; ++k) b[i] -= a[k][i] * b[k];
    b[i] /= a[i][i];
  }
  return b;
}

std::vector<double> vec(const nlohmann::json& j, const char* key, const std::string& src) {
  if (!j.contains(key) || !j[key].is_array()) fail(src, ": \"", key, "\" must be an array");
  std::vector<double> v;
  for (const auto& x : j[key]) {
    if (!x.is_number()) fail(src, ": \"", key, "\" must hold numbers");
    v.push_back(x.get<double>());
  }
  return v;
}

}  // namespace

double LogisticModel::predict(const std::vector<double>& x) const {
  if (x.size() != coef.size())
    fail("logistic model: ", x.size(), " features given, ", coef.size(), " expected");
  double z = intercept;
  for (size_t k = 0; k < x.size(); ++k) z += coef[k] * (x[k] - mean[k]) / std[k];
  return sigmoid(z);
}

std::vector<double> LogisticModel::predict_all(const std::vector<std::vector<double>>& rows) const {
  std::vector<double> p;
  p.reserve(rows.size());
  for (const auto& r : rows) p.push_back(predict(r));
  return p;
}

nlohmann::json LogisticModel::to_json() const {
  return {
      {"feature", feature}, {"coef", coef}, {"intercept", intercept}, {"mean", mean}, {"std", std}};
}

LogisticModel LogisticModel::from_json(const nlohmann::json& j, const std::string& src) {
  if (!j.is_object()) fail(src, ": a logistic model must be a JSON object");
  LogisticModel m;
  m.coef = vec(j, "coef", src);
  m.mean = vec(j, "mean", src);
  m.std = vec(j, "std", src);
  if (!j.contains("intercept") || !j["intercept"].is_number())
    fail(src, ": \"intercept\" must be a number");
  m.intercept = j["intercept"].get<double>();
  if (j.contains("feature")) {  // one name or a list
    const auto& f = j["feature"];
    if (f.is_string())
      m.feature = {f.get<std::string>()};
    else if (f.is_array())
      m.feature = f.get<std::vector<std::string>>();
    else
      fail(src, ": \"feature\" must be a string or an array of strings");
  }
  const size_t d = m.coef.size();
  if (m.mean.size() != d || m.std.size() != d || (!m.feature.empty() && m.feature.size() != d))
    fail(src, ": \"coef\", \"mean\", \"std\" and \"feature\" must have the same length");
  for (double s : m.std)
    if (!(s > 0)) fail(src, ": \"std\" entries must be positive");
  return m;
}

void LogisticModel::save(const std::filesystem::path& path) const {
  write_file_atomic(path, to_json().dump(2) + "\n");
}

LogisticModel LogisticModel::load(const std::filesystem::path& path) {
  return from_json(read_json_file(path), path.string());
}

LogisticModel fit_logistic(const std::vector<std::vector<double>>& rows,
                           const std::vector<int>& label, std::vector<std::string> names,
                           const LogisticOptions& o) {
  const size_t n = rows.size();
  if (n == 0 || n != label.size())
    fail("logistic regression: ", n, " rows and ", label.size(), " labels");
  const size_t d = rows[0].size();
  for (const auto& r : rows)
    if (r.size() != d) fail("logistic regression: rows have different lengths");
  for (int y : label)
    if (y != 0 && y != 1) fail("logistic regression: labels must be 0 or 1, got ", y);
  if (!names.empty() && names.size() != d)
    fail("logistic regression: ", names.size(), " feature names for ", d, " features");

  LogisticModel m;
  m.feature = std::move(names);
  m.mean.assign(d, 0.0);
  m.std.assign(d, 0.0);
  const auto nd = static_cast<double>(n);
  for (const auto& r : rows)
    for (size_t k = 0; k < d; ++k) m.mean[k] += r[k] / nd;
  for (const auto& r : rows)
    for (size_t k = 0; k < d; ++k) m.std[k] += (r[k] - m.mean[k]) * (r[k] - m.mean[k]) / nd;
  for (auto& s : m.std) s = s > 0 ? std::sqrt(s) : 1.0;
  // Standardised design with the intercept as the last column.
  std::vector<std::vector<double>> x(n, std::vector<double>(d + 1, 1.0));
  for (size_t i = 0; i < n; ++i)
    for (size_t k = 0; k < d; ++k) x[i][k] = (rows[i][k] - m.mean[k]) / m.std[k];

  std::vector<double> w(d + 1, 0.0);
  auto objective = [&](const std::vector<double>& v) {
    double loss = 0;
    for (size_t i = 0; i < n; ++i) {
      double z = 0;
      for (size_t k = 0; k <= d; ++k) z += x[i][k] * v[k];
      loss += softplus(z) - label[i] * z;
    }
    double pen = 0;
    for (size_t k = 0; k < d; ++k) pen += v[k] * v[k];
    return loss / nd + 0.5 * o.l2 * pen;
  };
  double f = objective(w);
  for (int it = 0; it < o.max_iterations; ++it) {
    std::vector<double> g(d + 1, 0.0);
    std::vector<std::vector<double>> h(d + 1, std::vector<double>(d + 1, 0.0));
    for (size_t i = 0; i < n; ++i) {
      double z = 0;
      for (size_t k = 0; k <= d; ++k) z += x[i][k] * w[k];
      const double p = sigmoid(z), s = p * (1 - p);
      for (size_t k = 0; k <= d; ++k) {
        g[k] += (p - label[i]) * x[i][k] / nd;
        for (size_t l = 0; l <= k; ++l) h[k][l] += s * x[i][k] * x[i][l] / nd;
      }
    }
    for (size_t k = 0; k <= d; ++k)
      for (size_t l = 0; l < k; ++l) h[l][k] = h[k][l];
    for (size_t k = 0; k < d; ++k) g[k] += o.l2 * w[k], h[k][k] += o.l2;
    h[d][d] += 1e-12;  // keeps the intercept's row definite when every label is equal
    const std::vector<double> step = solve_spd(h, g);
    // Backtracking keeps Newton monotone far from the optimum.
    double t = 1;
    std::vector<double> next(d + 1);
    double fn = f;
    for (int tries = 0; tries < 30; ++tries, t /= 2) {
      for (size_t k = 0; k <= d; ++k) next[k] = w[k] - t * step[k];
      fn = objective(next);
      if (fn <= f + 1e-15) break;
    }
    double largest = 0;
    for (size_t k = 0; k <= d; ++k) largest = std::max(largest, std::fabs(t * step[k]));
    w = next, f = fn;
    if (largest < o.tolerance) break;
  }
  m.coef.assign(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(d));
  m.intercept = w[d];
  return m;
}

}  // namespace drafteu::stats
