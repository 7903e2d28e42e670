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
  return n;
}

NoiseConfig draft_noise(const ExperimentConfig& c, uint64_t seed) {
  NoiseConfig n = target_noise(c);
  n.seed = seed;
  n.sigma = c.draft_sigma;
  return n;
}

std::vector<int64_t> encode_question(const Tokenizer& tok, const std::string& question) {
  if (tok.has_chat_template()) return distill::encode_prompt(tok, question);
  Problem p;
  p.question = question;
  const auto ids = tok.encode(prompt_text(p), tok.bos_id().has_value());
  return {ids.begin(), ids.end()};
}

namespace {

// Distillation data: `responses` samples per prompt from the unperturbed target. Not
// distill::generate_data: the testbed models read their own prompt format (encode_question), and
// the seeds follow the experiment's seed, which the cached steps and reported numbers rely on.
void write_data(const ExperimentConfig& c, const TrainedModels& t, const fs::path& out) {
  LoadedModel target = load_model(t.target_dir);
  const Tokenizer& tok = *target.tokenizer;
  auto prompts = distill::read_gsm8k(t.train_gsm8k);
  if (static_cast<int64_t>(prompts.size()) > c.data_prompts)
    prompts.resize(static_cast<size_t>(c.data_prompts));
  BatchGenerateOptions go;
  go.max_new_tokens = c.max_new_tokens;
  go.stop_ids = target.generation.eos_token_ids;
  if (go.stop_ids.empty())
    for (auto id : tok.eos_ids()) go.stop_ids.push_back(id);
  std::vector<distill::Sample> samples;
  for (const auto& p : prompts)
    for (int64_t r = 0; r < c.data_responses; ++r) {
      distill::Sample s;
      s.prompt_index = p.index;
      s.sample = r;
      s.seed = c.seed * 7919 + static_cast<uint64_t>(p.index) * 131 + static_cast<uint64_t>(r);
      s.prompt = p.question;
      s.prompt_ids = encode_question(tok, p.question);
      samples.push_back(std::move(s));
    }
  std::string lines;
  ProgressBar bar("data", static_cast<int64_t>(samples.size()), "samples");
  for (size_t b = 0; b < samples.size(); b += 16) {
    const size_t e = std::min(samples.size(), b + 16);
    std::vector<std::vector<int64_t>> ids;
    std::vector<uint64_t> seeds;
    for (size_t i = b; i < e; ++i)
      ids.push_back(samples[i].prompt_ids), seeds.push_back(samples[i].seed);
    auto responses = generate_batch(*target.model, ids, seeds, go);
    for (size_t i = b; i < e; ++i) {
      auto& s = samples[i];
      s.response_ids = std::move(responses[i - b]);
      const std::vector<int32_t> r(s.response_ids.begin(), s.response_ids.end());
      s.response = tok.decode(r, true);
      lines += dump_json(distill::sample_to_json(s));
      lines += "\n";
    }
    bar.update(static_cast<int64_t>(e));
  }
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

TrainedModels prepare_models(const ExperimentConfig& c, StepCache& cache, std::ostream* log) {
  TrainedModels t;
  json base_key;
  if (c.real_models()) {
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
    const Testbed tb = build_testbed(c.testbed, cache.root() / "testbed", log);
    t.target_dir = tb.target_dir;
    t.draft_dir = tb.draft_dirs.at(0);
    t.train_gsm8k = tb.train_jsonl;
    t.test_gsm8k = tb.test_jsonl;
    t.target_accuracy = tb.info.at("target").at("accuracy").get<double>();
    t.draft_accuracy = tb.info.at("drafts").at(0).at("accuracy").get<double>();
    base_key = {{"testbed", c.testbed.key()}};
  }
  const NoiseConfig noise = target_noise(c);
  const json fam_key = {{"members", c.members}, {"noise", distill::to_json(noise)}};

  // Distillation data: sampled from the unperturbed target (the members enter as teachers).
  const json data_key = {{"models", base_key},
                         {"prompts", c.data_prompts},
                         {"responses", c.data_responses},
                         {"max_new_tokens", c.max_new_tokens},
                         {"seed", c.seed}};
  const auto data_step = cache.run(
      "data", data_key, [&](const fs::path& dir) { write_data(c, t, dir / "data.jsonl"); });
  const fs::path data = data_step.dir / "data.jsonl";
  const auto samples = distill::read_samples(data);
  const json trained_on = {{"data", data_step.hash}, {"family", fam_key}};

  // p_mix: the target plus a LoRA trained by OSD against fresh noisy teachers.
  distill::OsdConfig osd;
  osd.teacher_noise = noise;
  osd.lora.r = c.lora_rank;
  osd.lora.alpha = 2.0 * static_cast<double>(c.lora_rank);
  const auto proxy_tc =
      budget(distill::OsdConfig::default_train(), c, c.proxy_steps, c.proxy_lr, c.seed);
  const json proxy_key = {
      {"in", trained_on}, {"osd", distill::to_json(osd)}, {"train", distill::to_json(proxy_tc)}};
  t.proxy_adapter = cache
                        .run("proxy-osd", proxy_key,
                             [&](const fs::path& dir) {
                               LoadedModel target = load_model(t.target_dir);
                               distill::OsdObjective objective(target.model, osd, proxy_tc.seed);
                               distill::train(objective, samples, proxy_tc, dir,
                                              {{"step", "proxy-osd"}, {"data", data.string()}});
                             })
                        .dir /
                    "adapter";

  // Draft families: every job of a family in one step directory.
  const auto draft_tc =
      budget(distill::DraftFamilyConfig::default_train(), c, c.draft_steps, c.draft_lr, c.seed + 1);
  const std::vector<FamilySpec> specs{
      {"ddd_1x3", distill::DraftStrategy::DDD, 1, 3},
      {"ddd_2x3", distill::DraftStrategy::DDD, 2, 3},
      {"ddd_3x3", distill::DraftStrategy::DDD, 3, 3},
      {"idd", distill::DraftStrategy::IDD, 1, 3},
      {"fdd", distill::DraftStrategy::FDD, 2, 3},
      {"only", distill::DraftStrategy::DDD, 1, 1, "target"},  // the one draft of "K only"
  };
  for (const auto& s : specs) {
    distill::DraftFamilyConfig fam;
    fam.strategy = s.strategy;
    fam.splits = s.splits;
    fam.per_split = s.per_split;
    fam.partition_seed = c.seed;
    fam.teacher = s.teacher;
    fam.teacher_noise = noise;
    fam.init_noise = NoiseConfig::draft_init(c.seed + 2);
    fam.init_noise.target_modules = c.noise_modules;
    fam.lora = draft_lora(c);
    const json key = {{"in", trained_on},
                      {"strategy", distill::draft_strategy_name(s.strategy)},
                      {"splits", s.splits},
                      {"per_split", s.per_split},
                      {"teacher", s.teacher},
                      {"init_noise", distill::to_json(fam.init_noise)},
                      {"lora", distill::to_json(fam.lora)},
                      {"train", distill::to_json(draft_tc)}};
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

  // Baselines: one draft each, trained against the unperturbed target.
  LoraConfig lora = draft_lora(c);
  for (const std::string method : {"gkd", "minillm"}) {
    distill::GkdConfig gkd;
    distill::MiniLLMConfig mini;
    gkd.lora = mini.lora = lora;
    gkd.on_policy.max_new_tokens = mini.on_policy.max_new_tokens = c.max_new_tokens;
    mini.on_policy.generations = 1;
    const auto tc = budget(method == "gkd" ? distill::GkdConfig::default_train()
                                           : distill::MiniLLMConfig::default_train(),
                           c, c.baseline_steps, c.draft_lr, c.seed + 3);
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

  json all = {{"models", base_key}, {"data", data_step.hash}};
  for (const auto& s : cache.steps()) all[s.name] = s.hash;
  t.key = distill::sha256_hex(all.dump()).substr(0, 16);
  return t;
}

}  // namespace drafteu::eval
