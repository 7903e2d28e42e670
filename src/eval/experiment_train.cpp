#include "eval/experiment_train.h"

#include <cmath>
#include <ostream>

#include "distill/config.h"
#include "distill/data.h"
#include "distill/drafts.h"
#include "distill/gkd.h"
#include "distill/manifest.h"
#include "distill/minillm.h"
#include "distill/osd.h"
#include "eval/story_models.h"
#include "eval/testbed_models.h"
#include "model/checkpoint.h"
#include "model/generate_batch.h"
#include "util/file.h"
#include "util/json.h"
#include "util/progress.h"

namespace drafteu::eval {

namespace fs = std::filesystem;
using json = nlohmann::json;

NoiseConfig target_noise(const ExperimentConfig& c) {
  NoiseConfig n = NoiseConfig::target_family(c.seed);
  n.sigma = c.sigma;
  n.rank = c.noise_rank;
  n.target_modules = c.noise_modules;
  n.relative = c.relative_noise;
  return n;
}

NoiseConfig draft_noise(const ExperimentConfig& c, uint64_t seed) {
  NoiseConfig n = target_noise(c);
  n.seed = seed;
  n.sigma = c.draft_sigma;
  return n;
}

std::vector<int64_t> encode_question(const ExperimentConfig& c, const Tokenizer& tok,
                                     const std::string& question) {
  if (c.stories_task()) {  // a story's opening, continued as it stands
    const auto ids = tok.encode(question, tok.bos_id().has_value());
    return {ids.begin(), ids.end()};
  }
  if (tok.has_chat_template()) return distill::encode_prompt(tok, question);
  Problem p;
  p.question = question;
  const auto ids = tok.encode(prompt_text(p), tok.bos_id().has_value());
  return {ids.begin(), ids.end()};
}

namespace {

// Distillation data: `responses` samples per prompt from the target, or from member `member` of
// the target family (its deltas attached while it generates; -1 = the unperturbed target). Not
// distill::generate_data: the testbed models read their own prompt format (encode_question), and
// the seeds follow the experiment's seed, which the cached steps and reported numbers rely on.
std::vector<distill::Sample> sample_data(const ExperimentConfig& c, LoadedModel& target,
                                         const std::vector<distill::Prompt>& prompts,
                                         int64_t responses, int64_t member,
                                         const NoiseConfig& noise, ProgressBar& bar,
                                         int64_t& done) {
  const Tokenizer& tok = *target.tokenizer;
  BatchGenerateOptions go;
  go.max_new_tokens = c.max_new_tokens;
  go.stop_ids = target.generation.eos_token_ids;
  if (go.stop_ids.empty())
    for (auto id : tok.eos_ids()) go.stop_ids.push_back(id);
  std::vector<distill::Sample> samples;
  for (const auto& p : prompts)
    for (int64_t r = 0; r < responses; ++r) {
      distill::Sample s;
      s.prompt_index = p.index;
      s.member = member;
      s.sample = r;
      s.seed = c.seed * 7919 + static_cast<uint64_t>(p.index) * 131 + static_cast<uint64_t>(r) +
               static_cast<uint64_t>(member + 1) * 0x9E3779B1ull;
      s.prompt = p.question;
      s.prompt_ids = encode_question(c, tok, p.question);
      samples.push_back(std::move(s));
    }
  AttachedDeltas attached;
  if (member >= 0)
    attached = attach_member(*target.model, NoiseSampler(*target.model, noise).member(member));
  for (size_t b = 0; b < samples.size(); b += 16) {
    const size_t e = std::min(samples.size(), b + 16);
    std::vector<std::vector<int64_t>> ids;
    std::vector<uint64_t> seeds;
    for (size_t i = b; i < e; ++i)
      ids.push_back(samples[i].prompt_ids), seeds.push_back(samples[i].seed);
    auto out = generate_batch(*target.model, ids, seeds, go);
    for (size_t i = b; i < e; ++i) {
      auto& s = samples[i];
      s.response_ids = std::move(out[i - b]);
      const std::vector<int32_t> r(s.response_ids.begin(), s.response_ids.end());
      s.response = tok.decode(r, true);
    }
    done += static_cast<int64_t>(e - b);
    bar.update(done);
  }
  return samples;
}

// B.1: p_mix's data holds `proxy_answers` answers per question from each of the M noisy members,
// in equal parts. B.2: the drafts' data holds `draft_answers` answers per question from the target.
void write_data(const ExperimentConfig& c, const TrainedModels& t, const NoiseConfig& noise,
                bool proxy, const fs::path& out) {
  LoadedModel target = load_model(t.target_dir);
  auto prompts = distill::read_gsm8k(t.train_gsm8k);
  if (static_cast<int64_t>(prompts.size()) > c.data_prompts)
    prompts.resize(static_cast<size_t>(c.data_prompts));
  const int64_t per = proxy ? c.proxy_answers : c.draft_answers;
  const int64_t sources = proxy ? c.members : 1;
  ProgressBar bar(proxy ? "data p_mix" : "data drafts",
                  sources * per * static_cast<int64_t>(prompts.size()), "samples");
  int64_t done = 0;
  std::string lines;
  for (int64_t m = 0; m < sources; ++m)
    for (const auto& s : sample_data(c, target, prompts, per, proxy ? m : -1, noise, bar, done))
      lines += dump_json(distill::sample_to_json(s)) + "\n";
  bar.finish();
  write_file_atomic(out, lines);
}

// A method's default TrainConfig, cut to the preset's budget: max_steps caps the run, warmup is
// a tenth of it (the paper's 150-step warmup would never finish).
distill::TrainConfig budget(distill::TrainConfig tc, const ExperimentConfig& c, int64_t steps,
                            double lr, uint64_t seed) {
  tc.lr = lr;
  tc.batch_size = c.batch_size;
  tc.grad_accum = 1;
  tc.max_steps = steps;
  tc.schedule.warmup_steps = 0;
  tc.schedule.warmup_ratio = 0.1;
  tc.log_every = std::max<int64_t>(1, steps / 2);
  tc.save_every = 0;
  tc.keep_checkpoints = 1;
  tc.seed = seed;
  return tc;
}

// The paper's settings (the method's library defaults, Tables 7-10) beside the run's.
json budget_record(const distill::TrainConfig& paper, const distill::TrainConfig& run) {
  return {{"paper", distill::to_json(paper)}, {"run", distill::to_json(run)}};
}

LoraConfig draft_lora(const ExperimentConfig& c) {
  LoraConfig l = distill::DraftFamilyConfig::default_lora();
  l.r = c.lora_rank;
  l.alpha = 2.0 * static_cast<double>(c.lora_rank);
  return l;
}

struct FamilySpec {
  std::string name;
  distill::DraftStrategy strategy;
  int64_t splits, per_split;
  std::string teacher = "member";
};

}  // namespace

namespace {

// What the training steps share: the config, the cache, the target family and the drafts' data.
struct TrainInputs {
  const ExperimentConfig& c;
  StepCache& cache;
  NoiseConfig noise;
  json fam_key, trained_on;
  std::vector<distill::Sample> samples;  // the drafts' data (the target's answers)
};

// The target and the draft base: real checkpoints, or the testbed trained (or cached) here.
// Returns the key the data steps depend on.
json base_models(const ExperimentConfig& c, StepCache& cache, std::ostream* log, TrainedModels& t) {
  json base_key;
  if (c.stories_task()) {
    const fs::path target = c.target_model;
    const json key = {{"target", fs::absolute(target).string()},
                      {"target_sha256", fs::is_regular_file(target)
                                            ? distill::sha256_file(target)
                                            : distill::sha256_file(target / "config.json")},
                      {"stories", c.json.at("stories")},
                      {"seed", c.seed}};
    const auto step =
        cache.run("story-models", key, [&](const fs::path& d) { build_story_models(c, d, log); });
    const StoryModels s = story_models_in(step.dir);
    t.target_dir = s.target_dir;
    t.draft_dir = s.draft_dir;
    t.train_gsm8k = s.train_jsonl;
    t.test_gsm8k = s.test_jsonl;
    t.target_accuracy = t.draft_accuracy = std::nan("");
    base_key = {{"stories", step.hash}};
  } else if (c.real_models()) {
    t.target_dir = c.target_model;
    t.draft_dir = c.draft_model;
    t.train_gsm8k = c.gsm8k_train;
    t.test_gsm8k = c.gsm8k_test;
    t.target_accuracy = t.draft_accuracy = std::nan("");
    base_key = {{"target", c.target_model},
                {"draft", c.draft_model},
                {"train", distill::sha256_file(c.gsm8k_train)},
                {"test", distill::sha256_file(c.gsm8k_test)}};
  } else {
    const Testbed tb = build_testbed(c.testbed.options(), cache.root() / "testbed", log);
    if (cache.stop_after() == "testbed") throw StoppedAfterStep("testbed");
    t.target_dir = tb.target_dir;
    t.draft_dir = tb.draft_dirs.at(0);
    t.train_gsm8k = tb.train_jsonl;
    t.test_gsm8k = tb.test_jsonl;
    t.target_accuracy = tb.info.at("target").at("accuracy").get<double>();
    t.draft_accuracy = tb.info.at("drafts").at(0).at("accuracy").get<double>();
    base_key = {{"testbed", c.testbed.options().key()}};
  }
  return base_key;
}

void train_proxy(const TrainInputs& in, const std::string& data_hash, const fs::path& data,
                 TrainedModels& t) {
  const ExperimentConfig& c = in.c;
  const NoiseConfig& noise = in.noise;
  const json& fam_key = in.fam_key;
  StepCache& cache = in.cache;
  const std::string& proxy_data_hash = data_hash;
  const fs::path& proxy_data = data;
  const auto proxy_samples = distill::read_samples(proxy_data);
  // p_mix: the target plus a LoRA trained by OSD against the family's members (B.1).
  distill::OsdConfig osd;
  osd.teacher_noise = noise;
  osd.teachers = c.osd_teachers;
  osd.family_members = c.members;
  osd.n_teachers = std::min<int64_t>(osd.n_teachers, c.members);
  osd.lora.r = c.lora_rank;
  osd.lora.alpha = 2.0 * static_cast<double>(c.lora_rank);
  osd.lora.target_modules = c.proxy_modules;
  const auto proxy_tc =
      budget(distill::OsdConfig::default_train(), c, c.proxy_steps, c.proxy_lr, c.seed);
  t.proxy_train = budget_record(distill::OsdConfig::default_train(), proxy_tc);
  const json proxy_key = {{"data", proxy_data_hash},
                          {"family", fam_key},
                          {"osd", distill::to_json(osd)},
                          {"train", distill::to_json(proxy_tc)}};
  t.proxy_adapter =
      cache
          .run("proxy-osd", proxy_key,
               [&](const fs::path& dir) {
                 LoadedModel target = load_model(t.target_dir);
                 distill::OsdObjective objective(target.model, osd, proxy_tc.seed);
                 distill::train(objective, proxy_samples, proxy_tc, dir,
                                {{"step", "proxy-osd"}, {"data", proxy_data.string()}});
               })
          .dir /
      "adapter";
}

void train_draft_families(const TrainInputs& in, TrainedModels& t) {
  const ExperimentConfig& c = in.c;
  const NoiseConfig& noise = in.noise;
  const json& trained_on = in.trained_on;
  const auto& samples = in.samples;
  StepCache& cache = in.cache;
  // Draft families, every job of a family in one step directory. DDD is one pool of S×M drafts
  // (B.6): 1×3, 2×3 and 3×3 are its first 1, 2 and 3 partitions, and "K only" takes draft (0, 0).
  // IDD and FDD train 2×M drafts each (K = 6; their first M for K = 3).
  const std::vector<FamilySpec> specs{
      {"ddd", distill::DraftStrategy::DDD, c.pool_splits, c.members},
      {"idd", distill::DraftStrategy::IDD, 2, c.members},
      {"fdd", distill::DraftStrategy::FDD, 2, c.members},
  };
  // Table 8 trains every draft one epoch over its own data: a DDD draft sees one of pool_splits
  // partitions, an FDD draft one of its splits, an IDD draft the whole set. With
  // train.draft_budget "epochs" train.draft_steps is a DDD draft's budget and the others make
  // as many passes over their data; with "steps" every draft takes train.draft_steps.
  auto steps_of = [&](const FamilySpec& s) {
    if (c.draft_budget == "steps" || s.strategy == distill::DraftStrategy::DDD)
      return c.draft_steps;
    const int64_t parts = s.strategy == distill::DraftStrategy::IDD ? 1 : s.splits;
    return (c.draft_steps * c.pool_splits + parts / 2) / parts;
  };
  t.draft_train = json::object();
  for (const auto& s : specs) {
    const auto draft_tc =
        budget(distill::DraftFamilyConfig::default_train(), c, steps_of(s), c.draft_lr, c.seed + 1);
    t.draft_train[s.name] = budget_record(distill::DraftFamilyConfig::default_train(), draft_tc);
    distill::DraftFamilyConfig fam;
    fam.strategy = s.strategy;
    fam.splits = s.splits;
    fam.per_split = s.per_split;
    fam.partition_seed = c.seed;
    fam.teacher = s.teacher;
    fam.teacher_noise = noise;
    fam.init_noise = NoiseConfig::draft_init(c.seed + 2);
    fam.init_noise.sigma = c.init_sigma;
    fam.init_noise.relative = c.relative_noise;
    fam.init_noise.target_modules = c.noise_modules;
    fam.init_noise_at = c.init_noise_at;
    fam.lora = draft_lora(c);
    json key = {{"in", trained_on},
                {"strategy", distill::draft_strategy_name(s.strategy)},
                {"splits", s.splits},
                {"per_split", s.per_split},
                {"teacher", s.teacher},
                {"init_noise", to_json(fam.init_noise)},
                {"lora", distill::to_json(fam.lora)},
                {"train", distill::to_json(draft_tc)}};
    // Only when it matters: the cache keys of families trained before the option stay valid.
    if (s.strategy != distill::DraftStrategy::DDD && c.init_noise_at != "frozen")
      key["init_noise_at"] = c.init_noise_at;
    t.families[s.name] =
        cache
            .run("drafts-" + s.name, key,
                 [&](const fs::path& dir) {
                   LoadedModel target = load_model(t.target_dir);
                   for (const auto& job : distill::plan_draft_family(fam)) {
                     LoadedModel draft = load_model(t.draft_dir);  // fresh base per job
                     distill::train_draft_job(draft.model, target.model, samples, fam, job,
                                              draft_tc, dir, {{"family", s.name}});
                   }
                 })
            .dir;
  }
}

void train_baselines(const TrainInputs& in, TrainedModels& t) {
  const ExperimentConfig& c = in.c;
  const json& trained_on = in.trained_on;
  const auto& samples = in.samples;
  StepCache& cache = in.cache;
  // Baselines: one draft each, trained against the unperturbed target (Tables 9, 10).
  for (const std::string method : {"gkd", "minillm"}) {
    distill::GkdConfig gkd;
    distill::MiniLLMConfig mini;
    gkd.lora = mini.lora = draft_lora(c);
    gkd.on_policy.max_new_tokens = mini.on_policy.max_new_tokens = c.max_new_tokens;
    const auto paper = method == "gkd" ? distill::GkdConfig::default_train()
                                       : distill::MiniLLMConfig::default_train();
    const auto tc = budget(paper, c, c.baseline_steps, c.draft_lr, c.seed + 3);
    t.baseline_train[method] = budget_record(paper, tc);
    const json key = {{"in", trained_on},
                      {"method", method == "gkd" ? distill::to_json(gkd) : distill::to_json(mini)},
                      {"train", distill::to_json(tc)}};
    const fs::path adapter =
        cache
            .run("baseline-" + method, key,
                 [&](const fs::path& dir) {
                   LoadedModel target = load_model(t.target_dir);
                   LoadedModel draft = load_model(t.draft_dir);
                   const distill::Teacher teacher{target.model, {}};
                   if (method == "gkd") {
                     distill::GkdObjective o(draft.model, teacher, gkd, tc.seed);
                     distill::train(o, samples, tc, dir, {{"step", method}});
                   } else {
                     distill::MiniLLMObjective o(draft.model, teacher, mini, tc.seed);
                     distill::train(o, samples, tc, dir, {{"step", method}});
                   }
                 })
            .dir /
        "adapter";
    (method == "gkd" ? t.gkd_adapter : t.minillm_adapter) = adapter;
  }
}

}  // namespace

TrainedModels prepare_models(const ExperimentConfig& c, StepCache& cache, std::ostream* log) {
  TrainedModels t;
  const json base_key = base_models(c, cache, log, t);
  const NoiseConfig noise = target_noise(c);
  const json fam_key = {{"members", c.members}, {"noise", to_json(noise)}};

  // Distillation data (B.1, B.2): p_mix learns from the members' answers, the drafts from the
  // target's.
  json data_key = {{"models", base_key},
                   {"prompts", c.data_prompts},
                   {"max_new_tokens", c.max_new_tokens},
                   {"seed", c.seed}};
  auto data_step = [&](bool proxy) {
    json key = data_key;
    key["answers"] = proxy ? c.proxy_answers : c.draft_answers;
    if (proxy) key["family"] = fam_key;
    const auto step = cache.run(proxy ? "data-proxy" : "data-drafts", key, [&](const fs::path& d) {
      write_data(c, t, noise, proxy, d / "data.jsonl");
    });
    return std::pair{step.hash, step.dir / "data.jsonl"};
  };
  const auto [proxy_data_hash, proxy_data] = data_step(true);
  const auto [draft_data_hash, draft_data] = data_step(false);
  const TrainInputs in{c,
                       cache,
                       noise,
                       fam_key,
                       {{"data", draft_data_hash}, {"family", fam_key}},
                       distill::read_samples(draft_data)};
  train_proxy(in, proxy_data_hash, proxy_data, t);
  train_draft_families(in, t);
  train_baselines(in, t);

  json all = {{"models", base_key}, {"data", {proxy_data_hash, draft_data_hash}}};
  for (const auto& s : cache.steps()) all[s.name] = s.hash;
  t.key = distill::sha256_hex(all.dump()).substr(0, 16);
  return t;
}

}  // namespace drafteu::eval
