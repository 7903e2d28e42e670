// The evaluated models of `drafteu experiment`, loaded once: the target, its noise families
// (ground truth, TokUR), the references (unperturbed target, p_mix) and every method's draft
// family; plus sampling target answers to test questions and scoring them token by token.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/experiment_config.h"
#include "eval/experiment_train.h"
#include "eval/testbed_task.h"
#include "family/family.h"
#include "family/low_rank.h"
#include "family/low_rank_family.h"
#include "model/checkpoint.h"
#include "uncertainty/scoring/token_scorer.h"

namespace drafteu::eval {

struct Answer {
  int64_t question = 0;
  double reference = 0;
  std::vector<int64_t> prompt, response;
  std::vector<std::string> pieces;  // response tokens as text
  std::string text;
  bool correct = false;
};

class MethodModels {
 public:
  MethodModels(const ExperimentConfig& config, const TrainedModels& trained);

  LoadedModel& target() { return target_; }
  const LlamaForCausalLM& draft_base() const { return draft_.model; }
  const std::vector<QaExample>& test_questions() const { return test_; }

  // `members` lora-noise members of the target (the family's noise, seed `seed`).
  std::shared_ptr<Family> target_family(int64_t members, uint64_t seed);
  // TokUR: q/v perturbed along the top singular vectors, per-token noise, member 0 unperturbed.
  std::shared_ptr<Family> tokur_family(int64_t samples, uint64_t seed);
  // A family of one: p_mix (target + OSD adapter) or the unperturbed target.
  std::shared_ptr<Family> reference(bool pmix);
  // Method `method`'s drafts (fidelity_methods()) at K = `k` where the method has no K of its
  // own (untrained, gkd, minillm: K noise draws; idd, fdd: the first K trained drafts); noise
  // draws depend on `seed`.
  std::shared_ptr<Family> drafts(const std::string& method, uint64_t seed, int64_t k = 3);
  // A trained draft family of prepare_models ("ddd" pool, "idd", "fdd"), loaded once.
  const LowRankFamily& trained_family(const std::string& name);

  // Weight parameters of the target and draft bases, and of the deltas of a family's members.
  int64_t target_parameters() const;
  int64_t draft_parameters() const;
  int64_t pmix_delta_parameters() const;
  static int64_t delta_parameters(const MemberDeltas& m);

  // One sampled target answer (temperature 1) to each of the first `n` test questions.
  std::vector<Answer> sample_answers(int64_t n, uint64_t seed);

 private:
  std::shared_ptr<Family> grouped(std::shared_ptr<Family> drafts, int64_t splits) const;

  const ExperimentConfig& config_;
  const TrainedModels& trained_;
  LoadedModel target_, draft_;
  MemberDeltas pmix_;
  std::vector<QaExample> test_;
  std::map<std::string, std::unique_ptr<LowRankFamily>> loaded_;
};

// Per-token values of one ScoredToken field over an answer's response.
enum class EuField { True, Hat, Bias };  // Bias: KL(q_mix ‖ reference)
// Per-token `field` of the answer's response; `jsd` (optional) receives the drafts' JSD beside it.
std::vector<double> score_answer(TokenScorer& scorer, const Answer& a, EuField field,
                                 std::vector<double>* jsd = nullptr);

// j[name + "_mean"], j[name + "_std"] over the runs where the value is finite (sample std).
void put_mean_std(nlohmann::json& j, const std::string& name, const std::vector<double>& v);

}  // namespace drafteu::eval
