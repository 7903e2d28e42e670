#include "eval/story_models.h"

#include <algorithm>
#include <ostream>

#include "eval/testbed_models.h"
#include "model/checkpoint.h"
#include "model/generate_batch.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"
#include "util/progress.h"

namespace drafteu::eval {

namespace fs = std::filesystem;
using json = nlohmann::json;

StoryModels story_models_in(const fs::path& dir) {
  return {dir / "target", dir / "draft", dir / "train.jsonl", dir / "test.jsonl",
          dir / "stories.json"};
}

namespace {

// Stories the target writes from BOS, each with the seed recorded in the step's key (c.seed).
std::vector<std::vector<int64_t>> sample_stories(const ExperimentConfig& c, LoadedModel& target,
                                                 int64_t bos, const std::vector<int64_t>& stop) {
  const auto& o = c.stories;
  BatchGenerateOptions go;
  go.max_new_tokens = o.sample_tokens;
  go.stop_ids = stop;
  ProgressBar bar("stories", o.samples, "stories");
  std::vector<std::vector<int64_t>> stories;
  for (int64_t b = 0; b < o.samples; b += 64) {
    const int64_t e = std::min(o.samples, b + 64);
    std::vector<std::vector<int64_t>> prompts(static_cast<size_t>(e - b), {bos});
    std::vector<uint64_t> seeds;
    for (int64_t i = b; i < e; ++i)
      seeds.push_back(c.seed * 1000003 + 17 + static_cast<uint64_t>(i));
    for (auto& r : generate_batch(*target.model, prompts, seeds, go)) {
      r.insert(r.begin(), bos);
      stories.push_back(std::move(r));
    }
    bar.update(e);
  }
  bar.finish();
  return stories;
}

}  // namespace

void build_story_models(const ExperimentConfig& c, const fs::path& dir, std::ostream* log) {
  const auto& o = c.stories;
  const auto paths = story_models_in(dir);
  LoadedModel target = load_model(c.target_model);
  if (!target.tokenizer)
    fail("experiment: field 'models.target': ", c.target_model, " carries no tokenizer");
  const Tokenizer& tok = *target.tokenizer;
  const auto bos = tok.bos_id();
  if (!bos) fail("experiment: field 'models.target': the tokenizer has no BOS token");
  std::vector<int64_t> stop = target.generation.eos_token_ids;
  if (stop.empty())
    for (auto id : tok.eos_ids()) stop.push_back(id);
  target.model->eval();
  for (auto& p : target.model->parameters()) p.set_requires_grad(false);

  std::vector<std::vector<int64_t>> stories;
  {
    torch::NoGradGuard no_grad;
    stories = sample_stories(c, target, *bos, stop);
  }
  // Openings as prompts: the last test_prompts stories for the evaluation, the rest for the
  // distillation data; too short a story gives no prompt.
  std::string train, test;
  int64_t n_train = 0, n_test = 0;
  const size_t opening = static_cast<size_t>(o.opening_tokens) + 1;  // BOS included
  for (size_t i = 0; i < stories.size(); ++i) {
    const auto& s = stories[i];
    if (s.size() <= opening) continue;
    const std::vector<int32_t> ids(s.begin() + 1, s.begin() + static_cast<std::ptrdiff_t>(opening));
    const bool is_test = static_cast<int64_t>(i) >= o.samples - o.test_prompts;
    (is_test ? test : train) +=
        dump_json({{"question", tok.decode(ids, true)}, {"answer", ""}}) + "\n";
    ++(is_test ? n_test : n_train);
  }
  if (n_train == 0 || n_test == 0)
    fail("experiment: the target's stories are too short for openings of ", o.opening_tokens,
         " tokens (field 'stories.opening_tokens')");

  // The draft base: a smaller model of the target's vocabulary, distilled on the stories.
  const auto& tc = target.config();
  ModelShape shape;
  shape.hidden = o.draft_hidden;
  shape.intermediate = std::max<int64_t>(16, o.draft_hidden * 8 / 3 / 16 * 16);
  shape.layers = o.draft_layers;
  shape.heads = shape.kv_heads = std::max<int64_t>(1, o.draft_hidden / 8);
  LlamaConfig dc = testbed_config(shape, tc.vocab_size, tc.max_position_embeddings);
  dc.bos_token_id = tc.bos_token_id;
  dc.eos_token_ids = tc.eos_token_ids;
  dc.rope_theta = tc.rope_theta;
  dc.rms_norm_eps = tc.rms_norm_eps;
  if (o.draft_init == "target_layers") {
    if (o.draft_hidden != tc.hidden_size)
      fail("experiment: field 'stories.draft_hidden' must equal the target's hidden size (",
           tc.hidden_size, "; got ", o.draft_hidden,
           ") when 'stories.draft_init' is target_layers");
    dc = tc;  // the target's width and heads, fewer layers
    dc.num_hidden_layers = o.draft_layers;
  }
  LoadedModel draft{init_model(dc, c.seed + 11), target.tokenizer, target.generation, {}};
  if (o.draft_init == "target_layers")
    init_from_pruned_target(*draft.model, *target.model, "experiment: the stories draft");
  PretrainOptions po;
  po.steps = o.draft_steps;
  po.batch_size = o.batch_size;
  po.warmup = std::min<int64_t>(50, o.draft_steps / 10);
  po.seed = c.seed + 11;
  po.answer_only = false;
  po.log_every = std::max<int64_t>(1, o.draft_steps / 6);
  if (log)
    *log << "[draft] " << dc.num_parameters() << " parameters (target " << tc.num_parameters()
         << "), " << po.steps << " steps of " << po.batch_size
         << " stories, distilled from the target" << std::endl;
  const auto stats = pretrain(*draft.model, stories, po, log, "draft", {},
                              PretrainTeacher{target.model.get(), 0.0});
  draft.model->eval();
  save_hf_model(target, paths.target_dir);
  save_hf_model(draft, paths.draft_dir);
  write_file_atomic(paths.train_jsonl, train);
  write_file_atomic(paths.test_jsonl, test);
  write_file_atomic(paths.info_json, json{{"stories", stories.size()},
                                          {"train_prompts", n_train},
                                          {"test_prompts", n_test},
                                          {"target_parameters", tc.num_parameters()},
                                          {"draft_parameters", dc.num_parameters()},
                                          {"draft_init", o.draft_init},
                                          {"draft_first_kd_loss", stats.losses.front()},
                                          {"draft_final_kd_loss", stats.losses.back()},
                                          {"draft_train_seconds", stats.seconds}}
                                             .dump(2) +
                                         "\n");
}

}  // namespace drafteu::eval
