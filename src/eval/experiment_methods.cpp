#include "eval/experiment_methods.h"

#include <cmath>

#include "distill/data.h"
#include "distill/drafts.h"
#include "eval/answers.h"
#include "eval/testbed_models.h"
#include "family/ensemble.h"
#include "family/grouped_family.h"
#include "family/low_rank_family.h"
#include "family/noise.h"
#include "family/peft.h"
#include "model/generate_batch.h"
#include "stats/metrics.h"
#include "util/error.h"

namespace drafteu::eval {

using namespace stats;  // metrics and the logistic map (src/stats)

MethodModels::MethodModels(const ExperimentConfig& config, const TrainedModels& trained)
    : config_(config), trained_(trained) {
  target_ = load_model(trained.target_dir);
  draft_ = load_model(trained.draft_dir);
  if (!target_.tokenizer) fail("experiment: ", trained.target_dir.string(), " has no tokenizer");
  // p_mix as a member's deltas: attached only while a reference forward runs, so the target
  // stays the plain target for every other family.
  pmix_ = load_peft_adapter(trained.proxy_adapter, *target_.model)->to_member();
  test_ = read_gsm8k_jsonl(trained.test_gsm8k);
}

std::shared_ptr<Family> MethodModels::target_family(int64_t members, uint64_t seed) {
  NoiseConfig n = target_noise(config_);
  n.seed = seed;
  return std::make_shared<LowRankFamily>(target_.model,
                                         NoiseSampler(*target_.model, n).members(members));
}

std::shared_ptr<Family> MethodModels::tokur_family(int64_t samples, uint64_t seed) {
  NoiseConfig n = NoiseConfig::tokur(seed);
  n.per_token = true;
  n.keep_unperturbed = true;
  return std::make_shared<LowRankFamily>(target_.model,
                                         NoiseSampler(*target_.model, n).members(samples));
}

std::shared_ptr<Family> MethodModels::reference(bool pmix) {
  if (!pmix) return std::make_shared<Ensemble>(Ensemble::of_one(target_.model));
  return std::make_shared<LowRankFamily>(target_.model, std::vector<MemberDeltas>{pmix_});
}

namespace {

// The first `count` members of `family` (job order: draft (s, m) is member s·M + m).
std::shared_ptr<Family> first_members(const LowRankFamily& family, int64_t count,
                                      const std::string& method) {
  if (count > family.size())
    fail("experiment: method '", method, "' needs ", count, " drafts; the family has ",
         family.size());
  std::vector<MemberDeltas> members;
  for (int64_t k = 0; k < count; ++k) members.push_back(family.member(k));
  return std::make_shared<LowRankFamily>(family.base(), std::move(members));
}

}  // namespace

const LowRankFamily& MethodModels::trained_family(const std::string& name) {
  auto it = loaded_.find(name);
  if (it == loaded_.end()) {
    const auto dir = trained_.families.find(name);
    if (dir == trained_.families.end()) fail("experiment: no trained draft family '", name, "'");
    it = loaded_
             .emplace(name,
                      std::make_unique<LowRankFamily>(load_draft_family(dir->second, draft_.model)))
             .first;
  }
  return *it->second;
}

std::shared_ptr<Family> MethodModels::drafts(const std::string& method, uint64_t seed, int64_t k) {
  const auto noise = draft_noise(config_, seed);
  if (method == "untrained")
    return std::make_shared<LowRankFamily>(noisy_draft_family(draft_.model, {}, k, noise));
  if (method == "gkd" || method == "minillm") {
    const auto& dir = method == "gkd" ? trained_.gkd_adapter : trained_.minillm_adapter;
    const auto trained = load_peft_adapter(dir, *draft_.model)->to_member();
    return std::make_shared<LowRankFamily>(noisy_draft_family(draft_.model, trained, k, noise));
  }
  if (method.rfind("only_", 0) == 0) {  // B.6: one draft of the trained pool + K noise draws
    const int64_t n = std::stoll(method.substr(5));
    return std::make_shared<LowRankFamily>(
        noisy_draft_family(draft_.model, trained_family("ddd").member(0), n, noise));
  }
  if (method.rfind("ddd_", 0) == 0) {  // "ddd_SxM": the pool's first S partitions
    const auto x = method.find('x');
    if (x == std::string::npos) fail("experiment: unknown method '", method, "'");
    const int64_t splits = std::stoll(method.substr(4, x - 4));
    const int64_t per = std::stoll(method.substr(x + 1));
    if (per != config_.members)
      fail("experiment: method '", method, "': the pool holds ", config_.members,
           " drafts per partition");
    return grouped(first_members(trained_family("ddd"), splits * per, method), splits);
  }
  if (method == "idd" || method == "fdd") {
    if (config_.group_drafts != "none" && k % config_.members != 0)
      fail("experiment: method '", method, "' at K = ", k, ": its drafts come in groups of ",
           config_.members);
    return grouped(first_members(trained_family(method), k, method),
                   std::max<int64_t>(1, k / config_.members));
  }
  fail("experiment: unknown method '", method, "'");
}

// The first `splits` partitions' drafts as config.group_drafts says: all of them, or one mixture
// per target member.
std::shared_ptr<Family> MethodModels::grouped(std::shared_ptr<Family> drafts,
                                              int64_t splits) const {
  if (config_.group_drafts == "none" || splits == 1) return drafts;
  return std::make_shared<GroupedFamily>(std::move(drafts),
                                         GroupedFamily::by_member(splits, config_.members));
}

int64_t MethodModels::target_parameters() const {
  return target_.config().num_parameters();
}
int64_t MethodModels::draft_parameters() const {
  return draft_.config().num_parameters();
}
int64_t MethodModels::pmix_delta_parameters() const {
  return delta_parameters(pmix_);
}

int64_t MethodModels::delta_parameters(const MemberDeltas& m) {
  int64_t n = 0;
  for (const auto& [name, term] : m)
    n += term.b.numel() +
         (term.a.defined() ? term.a.numel() : term.b.size(1) * term.redraw->in_features);
  return n;
}

std::vector<Answer> MethodModels::sample_answers(int64_t n, uint64_t seed) {
  const Tokenizer& tok = *target_.tokenizer;
  const auto count = std::min<size_t>(static_cast<size_t>(n), test_.size());
  std::vector<std::vector<int64_t>> prompts;
  std::vector<uint64_t> seeds;
  for (size_t i = 0; i < count; ++i) {
    prompts.push_back(encode_question(config_, tok, test_[i].question));
    seeds.push_back(seed * 1000003 + i);
  }
  BatchGenerateOptions o;
  o.max_new_tokens = config_.max_new_tokens;
  o.stop_ids = target_.generation.eos_token_ids;
  if (o.stop_ids.empty()) o.stop_ids = {tok.eos_ids().at(0)};
  std::vector<Answer> out;
  const size_t batch = 32;
  for (size_t b = 0; b < count; b += batch) {
    const size_t e = std::min(count, b + batch);
    const std::vector<std::vector<int64_t>> ps(prompts.begin() + b, prompts.begin() + e);
    const std::vector<uint64_t> ss(seeds.begin() + b, seeds.begin() + e);
    const auto responses = generate_batch(*target_.model, ps, ss, o);
    for (size_t i = b; i < e; ++i) {
      Answer a;
      a.question = static_cast<int64_t>(i);
      a.prompt = prompts[i];
      a.response = responses[i - b];
      if (a.response.empty()) a.response = {o.stop_ids.front()};
      const std::vector<int32_t> ids(a.response.begin(), a.response.end());
      a.text = tok.decode(ids, true);
      for (auto id : a.response) {
        std::string piece = tok.is_special(static_cast<int32_t>(id))
                                ? std::string()
                                : tok.token_bytes(static_cast<int32_t>(id));
        // SentencePiece's "▁" is a space (copied char by char: GCC 12 misreads replace()).
        std::string text;
        for (size_t p = 0; p < piece.size(); ++p) {
          if (piece.compare(p, 3, "\xE2\x96\x81") == 0) {
            text.push_back(' ');
            p += 2;
          } else {
            text.push_back(piece[p]);
          }
        }
        a.pieces.push_back(std::move(text));
      }
      a.reference = reference_answer(test_[i].answer).value_or(std::nan(""));
      a.correct = is_correct(a.text, a.reference);
      out.push_back(std::move(a));
    }
  }
  return out;
}

std::vector<double> score_answer(TokenScorer& scorer, const Answer& a, EuField field,
                                 std::vector<double>* jsd) {
  std::vector<double> v;
  for (const auto& t : scorer.score(a.prompt, a.response)) {
    const auto& x = field == EuField::True ? t.eu_true : field == EuField::Hat ? t.eu_hat : t.bias;
    v.push_back(x.value_or(std::nan("")));
    if (jsd) jsd->push_back(t.jsd.value_or(std::nan("")));
  }
  return v;
}

void put_mean_std(nlohmann::json& j, const std::string& name, const std::vector<double>& v) {
  // Runs where a metric is undefined (NaN: e.g. AUROC of a one-class split) are left out and
  // counted; all undefined gives NaN (null in JSON).
  std::vector<double> finite;
  for (double x : v)
    if (std::isfinite(x)) finite.push_back(x);
  const auto ms = finite.empty() ? MeanStd{std::nan(""), std::nan("")} : mean_std(finite);
  j[name + "_mean"] = ms.mean;
  j[name + "_std"] = ms.std;
  if (finite.size() != v.size()) j[name + "_undefined_runs"] = v.size() - finite.size();
}

}  // namespace drafteu::eval
