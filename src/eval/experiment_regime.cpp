#include "eval/experiment_regime.h"

#include <cmath>
#include <map>

#include "eval/answers.h"
#include "eval/testbed_models.h"
#include "family/noise.h"
#include "util/error.h"
#include "util/file.h"
#include "util/progress.h"

namespace drafteu::eval {

using json = nlohmann::json;

namespace {

// Greedy accuracy of the target, with `member` attached when given, on `questions`.
double greedy_accuracy(LoadedModel& target, const std::vector<Problem>& questions,
                       const MemberDeltas* member) {
  AttachedDeltas attached;
  if (member) attached = attach_member(*target.model, *member);
  return evaluate_accuracy(*target.model, *target.tokenizer, questions).accuracy;
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
    std::vector<Problem> questions;
    for (const auto& q : models.test_questions()) {
      if (questions.size() == 200) break;
      const auto reference = reference_answer(q.answer);
      if (!reference) fail("experiment: test question '", q.question, "' has no #### answer");
      Problem p;
      p.question = q.question;
      p.answer = std::llround(*reference);
      questions.push_back(std::move(p));
    }
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
