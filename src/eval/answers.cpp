#include "eval/answers.h"

#include <cmath>
#include <cstdlib>
#include <vector>

namespace drafteu::eval {

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return std::string(s.substr(a, b - a));
}

// The contents of a brace group opening at s[open] == '{' (to the end if unbalanced).
std::string brace_group(std::string_view s, size_t open, size_t* end = nullptr) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) {
      if (end) *end = i + 1;
      return std::string(s.substr(open + 1, i - open - 1));
    }
  }
  if (end) *end = s.size();
  return std::string(s.substr(open + 1));
}

struct NumberSpan {
  size_t begin = 0, end = 0;
};

// Numbers as written in answers: -1,234.5 or 3/4; commas only between digits.
std::vector<NumberSpan> find_numbers(std::string_view s) {
  std::vector<NumberSpan> out;
  size_t i = 0;
  while (i < s.size()) {
    const bool lead_dot =
        s[i] == '.' && i + 1 < s.size() && is_digit(s[i + 1]) && (i == 0 || !is_digit(s[i - 1]));
    if (!is_digit(s[i]) && !lead_dot) {
      ++i;
      continue;
    }
    size_t b = i;
    if (b > 0 && s[b - 1] == '-' && (b < 2 || !std::isalnum(static_cast<unsigned char>(s[b - 2]))))
      --b;
    size_t j = i;
    auto digits = [&] {
      while (j < s.size() &&
             (is_digit(s[j]) || (s[j] == ',' && j + 1 < s.size() && is_digit(s[j + 1]) && j > i)))
        ++j;
    };
    digits();
    if (j + 1 < s.size() && s[j] == '.' && is_digit(s[j + 1])) {
      ++j;
      while (j < s.size() && is_digit(s[j])) ++j;
    }
    if (j + 1 < s.size() && s[j] == '/' && is_digit(s[j + 1])) {
      ++j;
      while (j < s.size() && is_digit(s[j])) ++j;
    }
    out.push_back({b, j});
    i = j;
  }
  return out;
}

// Rewrites \frac{a}{b} as a/b and drops LaTeX wrappers and escapes.
std::string simplify_latex(std::string_view in) {
  std::string s(in);
  for (const char* f : {"\\dfrac", "\\tfrac", "\\frac"}) {
    size_t at;
    while ((at = s.find(f)) != std::string::npos) {
      size_t p = at + std::string_view(f).size(), e1 = 0, e2 = 0;
      if (p >= s.size() || s[p] != '{') break;
      const std::string num = brace_group(s, p, &e1);
      if (e1 >= s.size() || s[e1] != '{') break;
      const std::string den = brace_group(s, e1, &e2);
      s = s.substr(0, at) + "(" + num + ")/(" + den + ")" + s.substr(e2);
    }
  }
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\') {  // drop the command name, keep its argument
      size_t j = i + 1;
      while (j < s.size() && std::isalpha(static_cast<unsigned char>(s[j]))) ++j;
      if (j == i + 1 && j < s.size()) ++j;  // \$ \% \, \!
      i = j - 1;
      continue;
    }
    if (s[i] == '{' || s[i] == '}' || s[i] == '$' || s[i] == '%') continue;
    out += s[i];
  }
  // "(3)/(4)" from \frac -> "3/4"
  std::string clean;
  for (char c : out)
    if (c != '(' && c != ')') clean += c;
  return clean;
}

std::optional<double> number_value(std::string_view s) {
  std::string plain;
  for (char c : s)
    if (c != ',') plain += c;
  const size_t slash = plain.find('/');
  char* end = nullptr;
  if (slash == std::string::npos) {
    double v = std::strtod(plain.c_str(), &end);
    return std::isfinite(v) ? std::optional<double>(v) : std::nullopt;
  }
  const double a = std::strtod(plain.substr(0, slash).c_str(), &end);
  const double b = std::strtod(plain.substr(slash + 1).c_str(), &end);
  if (b == 0) return std::nullopt;
  return a / b;
}

}  // namespace

std::optional<std::string> extract_final_answer(std::string_view r) {
  const size_t boxed = r.rfind("\\boxed");
  if (boxed != std::string_view::npos) {
    size_t p = boxed + 6;
    while (p < r.size() && r[p] == ' ') ++p;
    if (p < r.size() && r[p] == '{') {
      std::string inner = trim(brace_group(r, p));
      if (!inner.empty()) return inner;
    }
  }
  const size_t hashes = r.rfind("####");
  if (hashes != std::string_view::npos) {
    std::string_view rest = r.substr(hashes + 4);
    std::string line = trim(rest.substr(0, rest.find('\n')));
    if (!line.empty()) return line;
  }
  const auto nums = find_numbers(r);
  if (nums.empty()) return std::nullopt;
  return std::string(r.substr(nums.back().begin, nums.back().end - nums.back().begin));
}

std::optional<double> parse_number(std::string_view text) {
  const std::string s = simplify_latex(text);
  const auto nums = find_numbers(s);
  if (nums.empty()) return std::nullopt;
  return number_value(std::string_view(s).substr(nums[0].begin, nums[0].end - nums[0].begin));
}

std::optional<double> reference_answer(std::string_view gsm8k_answer) {
  const size_t hashes = gsm8k_answer.rfind("####");
  if (hashes == std::string_view::npos) return std::nullopt;
  return parse_number(gsm8k_answer.substr(hashes + 4));
}

bool numbers_equal(double a, double b) {
  return std::fabs(a - b) <= std::max(1e-6, 1e-9 * std::fabs(b));
}

bool is_correct(std::string_view response, double reference) {
  const auto ans = extract_final_answer(response);
  if (!ans) return false;
  const auto v = parse_number(*ans);
  return v && numbers_equal(*v, reference);
}

}  // namespace drafteu::eval
