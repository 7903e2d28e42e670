#include "eval/experiment_regime.h"

#include <cmath>
#include <map>

#include "eval/answers.h"
#include "eval/testbed_models.h"
#include "family/noise.h"
#include "util/file.h"
#include "util/progress.h"

namespace drafteu::eval {

using json = nlohmann::json;

namespace {

// Greedy accuracy of the target, with `member` attached when given, on `questions`.
double greedy_accuracy(LoadedModel& target, const std::vector<QaExample>& questions,
                       const MemberDeltas* member) {
  std::vector<std::string> prompts;
  for (const auto& q : questions) {
    Problem p;
    p.question = q.question;
    prompts.push_back(prompt_text(p));
  }
  AttachedDeltas attached;
  if (member) attached = attach_member(*target.model, *member);
  const auto room = target.model->config().max_position_embeddings;
  const auto responses =
      greedy_complete(*target.model, *target.tokenizer, prompts, std::min<int64_t>(160, room / 2));
  double right = 0;
  for (size_t i = 0; i < questions.size(); ++i)
    right += is_correct(responses[i], reference_answer(questions[i].answer).value_or(std::nan("")));
  return questions.empty() ? 0.0 : right / static_cast<double>(questions.size());
}

}  // namespace

void run_regime(const ExperimentConfig& c, MethodModels& models, const std::filesystem::path& dir) {
  auto& target = models.target();
  const NoiseSampler sampler(*target.model, target_noise(c));
  std::map<std::string, std::pair<double, int64_t>> rel;  // module suffix -> (sum, count)
  std::vector<MemberDeltas> members;
  for (int64_t m = 0; m < c.members; ++m) {
    members.push_back(sampler.member(m));
    for (const auto& [name, term] : members.back()) {
      const auto& w = target.model->linear(name).weight;
      const double r = term.delta_weight().norm().item<double>() / w.norm().item<double>();
      auto& slot = rel[name.substr(name.rfind('.') + 1)];
      slot.first += r;
      slot.second += 1;
    }
  }
  json delta_rel = json::object();
  for (const auto& [module, sum] : rel) delta_rel[module] = sum.first / sum.second;
  json out = {{"delta_rel", delta_rel}};
  // Accuracy is measured in the testbed's prompt format; real checkpoints have their own.
  if (!c.real_models()) {
    const auto& all = models.test_questions();
    const std::vector<QaExample> questions(
        all.begin(), all.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(all.size(), 200)));
    ProgressBar bar("regime", c.members + 1, "models");
    out["target_accuracy"] = greedy_accuracy(target, questions, nullptr);
    bar.update(1);
    json acc = json::array();
    for (int64_t m = 0; m < c.members; ++m) {
      acc.push_back(greedy_accuracy(target, questions, &members[static_cast<size_t>(m)]));
      bar.update(m + 2);
    }
    bar.finish();
    out["member_accuracy"] = acc;
    out["questions"] = questions.size();
  }
  write_file_atomic(dir / "results.json", out.dump(2) + "\n");
}

}  // namespace drafteu::eval
