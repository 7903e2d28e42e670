// A seeded generator of GSM8K-style arithmetic word problems with worked solutions: the testbed
// task that small from-scratch models can learn partly, so their answers are sometimes wrong.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace drafteu::eval {

struct TaskOptions {
  uint64_t seed = 1234;
  // 0 = small numbers, 1 = large ones; each problem also draws its own scale below this.
  double difficulty = 0.5;
  int min_steps = 2;  // 2..4 calculator steps per problem
  int max_steps = 4;
  int test_percent = 20;  // share of the problem space (by question hash) that is test-only
  // Each solution line opens with one of several equivalent connectives ("So ", "Next, ", ...),
  // drawn per line, as GSM8K's free-text solutions vary their wording: positions whose answer
  // is a matter of style, not arithmetic. The draws come from their own stream, so the problems
  // and their numbers are the same either way.
  bool varied_phrasing = false;
};

// One calculator note: "3*4" = 12 (GSM8K writes it <<3*4=12>>).
struct CalcStep {
  std::string expr;
  int64_t value = 0;
};

struct Problem {
  std::string template_name;
  std::string question;
  // Worked solution, one sentence a line: "She buys 3*4=12 apples.\n...\n\boxed{17}".
  std::string solution;
  std::vector<CalcStep> steps;
  int64_t answer = 0;
  // GSM8K form: notes as "3*4=<<3*4=12>>12", then the \boxed line and "#### 17".
  std::string gsm8k_answer() const;
};

struct TaskSplits {
  std::vector<Problem> train, test;
};

// n_train and n_test distinct problems; a question lands in train or test by its hash alone, so
// the splits never share one and a split's content does not depend on the other's size.
TaskSplits generate_task(const TaskOptions& options, size_t n_train, size_t n_test);
std::vector<std::string> template_names();

// {"question", "answer"} a line, as GSM8K's files.
struct QaExample {
  std::string question, answer;
};
void write_gsm8k_jsonl(const std::filesystem::path& path, const std::vector<Problem>& problems);
std::vector<QaExample> read_gsm8k_jsonl(const std::filesystem::path& path);

// FNV-1a 64, stable across platforms (split routing, cache keys).
uint64_t stable_hash(std::string_view s);

}  // namespace drafteu::eval
