#include "eval/experiment_config.h"

#include <algorithm>

#include "distill/samples.h"
#include "family/module_names.h"
#include "model/config.h"
#include "util/error.h"
#include "util/json.h"

namespace drafteu::eval {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Sizes, counts and steps: at most INT32_MAX, so none wraps in an int (testbed.vocab) or
// overflows in arithmetic on it (the testbed's widths are multiplied by 8).
auto size_check() {
  return [](const int64_t& v) {
    return v >= 1 && v <= 2147483647
               ? std::string()
               : std::string("must be a positive integer of at most 2147483647");
  };
}

const std::vector<std::string> kSevenModules{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                             "gate_proj", "up_proj", "down_proj"};

json patch_for(const std::string& name) {
  if (name == "quick") return json::object();
  if (name == "tiny")  // the test suite's end-to-end run: every step, minimal sizes
    return json{
        {"testbed",
         {{"n_train", 400},
          {"n_test", 40},
          {"vocab", 384},
          {"target_hidden", 48},
          {"target_layers", 2},
          {"target_steps", 70},
          {"draft_hidden", 32},
          {"draft_layers", 1},
          {"draft_steps", 20},
          {"draft_init", "random"},
          {"draft_lr", 6e-3}}},
        {"data", {{"prompts", 12}, {"max_new_tokens", 48}}},
        {"train",
         {{"proxy_steps", 3}, {"draft_steps", 2}, {"baseline_steps", 2}, {"batch_size", 2}}},
        {"fidelity", {{"questions", 3}, {"trials", 5}}},
        {"proxy", {{"truth_members", 6}, {"runs", 3}, {"questions", 2}}},
        {"detection", {{"questions", 16}, {"tokur_samples", 4}}},
        {"cost", {{"answers", 2}}}};
  if (name == "full")
    return json{
        {"testbed", {{"n_train", 6000}, {"n_test", 320}}},
        {"data", {{"prompts", 160}, {"max_new_tokens", 128}}},
        {"train",
         {{"proxy_steps", 200}, {"draft_steps", 60}, {"baseline_steps", 30}, {"batch_size", 8}}},
        {"fidelity", {{"questions", 24}}},
        {"proxy", {{"questions", 8}}},
        {"detection", {{"questions", 300}}},
        {"cost", {{"answers", 8}}}};
  if (name == "stories260k")  // the real stories260K (models.target); no labels, no detection
    return json{{"task", "stories"},
                {"data", {{"prompts", 48}, {"max_new_tokens", 64}}},
                {"fidelity", {{"questions", 16}}},
                {"proxy", {{"questions", 8}}}};
  fail("experiment: unknown preset '", name, "' (known: tiny, quick, full, stories260k)");
}

// Module suffixes must name linear layers of the model described by config.json.
void check_modules(const LlamaConfig& c, const std::vector<std::string>& modules,
                   const std::string& field, const std::string& source) {
  for (const auto& m : modules) {
    bool found = false;
    for (int64_t l = 0; l < c.num_hidden_layers && !found; ++l)
      for (const auto& name : kSevenModules) {
        const std::string full = "model.layers." + std::to_string(l) +
                                 (name.size() == 6 ? ".self_attn." : ".mlp.") +  // q/k/v/o_proj
                                 name;
        if (module_matches(full, m)) found = true;
      }
    if (!found)
      fail(source, ": field '", field, "': module '", m, "' is not a linear layer of the model");
  }
}

LlamaConfig check_model_dir(const std::string& dir, const std::string& field,
                            const std::string& source) {
  if (!fs::is_directory(dir))
    fail(source, ": field '", field, "': model directory '", dir, "' does not exist");
  const fs::path cj = fs::path(dir) / "config.json";
  if (!fs::exists(cj)) fail(source, ": field '", field, "': '", cj.string(), "' is missing");
  try {
    return LlamaConfig::from_hf_file(cj);
  } catch (const std::exception& e) {
    fail(source, ": field '", field, "': ", e.what());
  }
}

}  // namespace

TestbedOptions TestbedSection::options() const {
  TestbedOptions tb;
  tb.n_train = static_cast<size_t>(n_train);
  tb.n_test = static_cast<size_t>(n_test);
  tb.eval_problems = std::min<size_t>(tb.n_test, 200);
  tb.task.difficulty = difficulty;
  tb.task.min_steps = static_cast<int>(min_steps);
  tb.task.max_steps = static_cast<int>(max_steps);
  tb.task.varied_phrasing = phrasing == "varied";
  tb.bpe.vocab_size = static_cast<int>(vocab);
  // SwiGLU's ~8/3 ratio rounded to 16, as `drafteu testbed` does.
  auto ffn = [](int64_t hidden) { return std::max<int64_t>(16, hidden * 8 / 3 / 16 * 16); };
  tb.target_shape = {target_hidden, ffn(target_hidden), target_layers, 4, 4};
  tb.target_train.steps = target_steps;
  tb.target_train.batch_size = batch_size;
  tb.target_train.warmup = std::min<int64_t>(50, target_steps / 10);
  tb.drafts[0].shape = {draft_hidden, ffn(draft_hidden), draft_layers, 4, 4};
  tb.drafts[0].train.steps = draft_steps;
  tb.drafts[0].train.lr = draft_lr;
  tb.drafts[0].train.batch_size = batch_size;
  tb.drafts[0].train.warmup = std::min<int64_t>(50, draft_steps / 10);
  tb.drafts[0].distill_from_target = draft_distill;
  tb.drafts[0].init_from_target = draft_init == "target_layers";
  tb.target_train.dtype = tb.drafts[0].train.dtype = parse_compute_dtype(dtype, "testbed.dtype");
  return tb;
}

namespace {

config::Fields<TestbedSection> testbed_section_fields() {
  using config::positive;
  using T = TestbedSection;
  config::Fields<T> f;
  f.field("n_train", &T::n_train, size_check())
      .field("n_test", &T::n_test, size_check())
      .field("difficulty", &T::difficulty, config::in_range(0.0, 1.0))
      .field("min_steps", &T::min_steps, config::in_range<int64_t>(2, 4))
      .field("max_steps", &T::max_steps, config::in_range<int64_t>(2, 4))
      .field("phrasing", &T::phrasing, config::one_of({"fixed", "varied"}))
      .field("vocab", &T::vocab, size_check())
      .field("target_hidden", &T::target_hidden, size_check())
      .field("target_layers", &T::target_layers, size_check())
      .field("target_steps", &T::target_steps, size_check())
      .field("draft_hidden", &T::draft_hidden, size_check())
      .field("draft_layers", &T::draft_layers, size_check())
      .field("draft_steps", &T::draft_steps, size_check())
      .field("draft_lr", &T::draft_lr, config::in_range(0.0, 1.0))
      .field("draft_distill", &T::draft_distill)
      .field("draft_init", &T::draft_init, config::one_of({"random", "target_layers"}))
      .field("batch_size", &T::batch_size, size_check())
      .field("dtype", &T::dtype, config::one_of({"f32", "bf16", "auto"}))
      .rule([](const T& t, const config::Where& w) {
        if (t.max_steps < t.min_steps)
          config::fail_field(w.at("max_steps"), cat("must be at least min_steps (", t.min_steps,
                                                    "; got ", t.max_steps, ")"));
        if (t.draft_init != "target_layers") return;
        if (t.draft_hidden != t.target_hidden)
          config::fail_field(w.at("draft_init"),
                             cat("'target_layers' prunes the target in depth, so draft_hidden must "
                                 "equal target_hidden (",
                                 t.target_hidden, "; got ", t.draft_hidden,
                                 "); set it to 'random' for a narrower draft"));
        if (t.draft_layers > t.target_layers)
          config::fail_field(w.at("draft_init"),
                             cat("'target_layers' keeps draft_layers of the target's layers, so "
                                 "draft_layers must be at most target_layers (",
                                 t.target_layers, "; got ", t.draft_layers, ")"));
      });
  return f;
}

config::Fields<StoriesOptions> stories_fields() {
  using config::positive;
  using S = StoriesOptions;
  config::Fields<S> f;
  f.field("samples", &S::samples, size_check())
      .field("sample_tokens", &S::sample_tokens, size_check())
      .field("opening_tokens", &S::opening_tokens, size_check())
      .field("test_prompts", &S::test_prompts, size_check())
      .field("draft_hidden", &S::draft_hidden, size_check())
      .field("draft_layers", &S::draft_layers, size_check())
      .field("draft_init", &S::draft_init, config::one_of({"random", "target_layers"}))
      .field("draft_steps", &S::draft_steps, size_check())
      .field("batch_size", &S::batch_size, size_check())
      .rule([](const S& s, const config::Where& w) {
        if (s.test_prompts >= s.samples)
          config::fail_field(w.at("test_prompts"), cat("must be below samples (", s.samples,
                                                       "; got ", s.test_prompts, ")"));
        if (s.opening_tokens >= s.sample_tokens)
          config::fail_field(w.at("opening_tokens"),
                             cat("must be below sample_tokens (", s.sample_tokens, "; got ",
                                 s.opening_tokens, ")"));
      });
  return f;
}

}  // namespace

const config::Fields<ExperimentConfig>& experiment_config_fields() {
  static const config::Fields<ExperimentConfig> f = [] {
    using config::in_range;
    using config::positive;
    using E = ExperimentConfig;
    const auto pos = size_check();
    config::Fields<E> e;
    e.field("preset", &E::preset)
        .field("seed", &E::seed)
        .field("task", &E::task, config::one_of({"arithmetic", "stories"}))
        .nested("testbed", &E::testbed, testbed_section_fields())
        .nested("stories", &E::stories, stories_fields())
        .field("models.target", &E::target_model)
        .field("models.draft", &E::draft_model)
        .field("models.gsm8k_train", &E::gsm8k_train)
        .field("models.gsm8k_test", &E::gsm8k_test)
        .field("family.members", &E::members, config::at_least<int64_t>(2))
        .field("family.sigma", &E::sigma, in_range(0.0, 10.0))
        .field("family.relative", &E::relative_noise)
        .field("family.rank", &E::noise_rank, pos)
        .field("family.modules", &E::noise_modules, config::not_empty<std::string>())
        .field("data.prompts", &E::data_prompts, pos)
        .field("data.proxy_answers", &E::proxy_answers, pos)
        .field("data.draft_answers", &E::draft_answers, pos)
        .field("data.max_new_tokens", &E::max_new_tokens, pos)
        .field("train.proxy_steps", &E::proxy_steps, pos)
        .field("train.osd_teachers", &E::osd_teachers, config::one_of({"family", "posterior"}))
        .field("train.draft_steps", &E::draft_steps, pos)
        // The 3x3 configuration needs three partitions.
        .field("train.pool_splits", &E::pool_splits, config::at_least<int64_t>(3))
        .field("train.init_sigma", &E::init_sigma, in_range(0.0, 10.0))
        .field("train.init_noise_at", &E::init_noise_at,
               config::one_of({"frozen", "adapter", "lora_a"}))
        .field("train.baseline_steps", &E::baseline_steps, pos)
        .field("train.batch_size", &E::batch_size, pos)
        .field("train.proxy_lr", &E::proxy_lr, in_range(0.0, 1.0))
        .field(
            "train.proxy_modules", &E::proxy_modules,
            [](const std::vector<std::string>& ms) {
              if (ms.empty()) return std::string("must list at least one module");
              for (const auto& m : ms)
                if (std::find(kSevenModules.begin(), kSevenModules.end(), m) == kSevenModules.end())
                  return "'" + m + "' is not one of the seven linear modules (q_proj .. down_proj)";
              return std::string();
            })
        .field("train.draft_budget", &E::draft_budget, config::one_of({"epochs", "steps"}))
        .field("train.draft_lr", &E::draft_lr, in_range(0.0, 1.0))
        .field("train.lora_rank", &E::lora_rank, pos)
        .field("fidelity.questions", &E::eval_questions, pos)
        .field("fidelity.trials", &E::trials, pos)
        .field("fidelity.draft_sigma", &E::draft_sigma, in_range(0.0, 10.0))
        .field("fidelity.group_drafts", &E::group_drafts, config::one_of({"none", "member"}))
        .field("proxy.k", &E::proxy_k,
               [](const std::vector<int64_t>& ks) {
                 if (ks.empty()) return std::string("must list at least one K");
                 for (auto k : ks)
                   if (k < 2) return std::string("must list Ks of at least 2");
                 return std::string();
               })
        .field("proxy.truth", &E::proxy_truth, config::one_of({"family", "fresh"}))
        .field("proxy.truth_members", &E::proxy_truth_members, pos)
        .field("proxy.runs", &E::proxy_runs, pos)
        .field("proxy.questions", &E::proxy_questions, pos)
        // A train and a test split.
        .field("detection.questions", &E::detection_questions, config::at_least<int64_t>(4))
        .field("detection.sets", &E::detection_sets, pos)
        .field("detection.train_fraction", &E::train_fraction, in_range(0.05, 0.95))
        .field("detection.tokur_samples", &E::tokur_samples, pos)
        .field("detection.tokur_extra_samples", &E::tokur_extra_samples, pos)
        .field("detection.aggregate", &E::detection_aggregate,
               config::one_of({"sum", "mean", "max"}))
        .field("detection.ddd_method", &E::detection_ddd, config::one_of(fidelity_methods()))
        .field("cost.answers", &E::cost_answers, pos);
    return e;
  }();
  return f;
}

std::vector<std::string> experiment_preset_names() {
  return {"tiny", "quick", "full", "stories260k"};
}

ExperimentConfig preset_config(const std::string& name) {
  ExperimentConfig c = experiment_config_fields().from_json(patch_for(name), "preset " + name, {});
  c.preset = name;
  return c;
}

json experiment_preset(const std::string& name) {
  return experiment_config_fields().to_json(preset_config(name));
}

const std::vector<std::string>& fidelity_methods() {
  static const std::vector<std::string> m{"untrained", "gkd",     "minillm", "idd",
                                          "fdd",       "ddd_1x3", "ddd_2x3", "ddd_3x3",
                                          "only_3",    "only_6",  "only_9"};
  return m;
}

ExperimentConfig load_experiment_config(const std::string& preset, const fs::path& file) {
  json overrides = file.empty() ? json::object() : read_json_file(file);
  std::string name = preset;
  if (name.empty()) {
    name = "quick";
    if (auto it = overrides.find("preset"); it != overrides.end()) {
      if (!it->is_string())  // json::value() would throw a type_error naming no file
        fail(file.string(), ": field 'preset' must be a string, got ", json_preview(*it));
      name = it->get<std::string>();
    }
  }
  return experiment_config_from_json(overrides, name,
                                     file.empty() ? "preset " + name : file.string());
}

ExperimentConfig experiment_config_from_json(const json& overrides, const std::string& preset,
                                             const std::string& source) {
  ExperimentConfig c =
      experiment_config_fields().from_json(overrides, source, preset_config(preset));
  c.preset = preset;
  c.json = config::overlay(experiment_preset(preset), overrides);
  c.json["preset"] = preset;
  return c;
}

void validate_experiment_config(const ExperimentConfig& c, const std::string& source) {
  if (c.stories_task()) {
    if (c.target_model.empty())
      fail(source, ": field 'models.target' is required by task 'stories' (`--model PATH`)");
    if (!fs::exists(c.target_model))
      fail(source, ": field 'models.target': '", c.target_model, "' does not exist");
    for (const auto* f : {&c.draft_model, &c.gsm8k_train, &c.gsm8k_test})
      if (!f->empty())
        fail(source, ": task 'stories' builds its own draft base and prompts; leave models.draft, ",
             "models.gsm8k_train and models.gsm8k_test empty");
    return;
  }
  const bool any = !c.target_model.empty() || !c.draft_model.empty() || !c.gsm8k_train.empty() ||
                   !c.gsm8k_test.empty();
  if (!any) return;  // the testbed builds its own models and data
  using Field = std::pair<const std::string*, const char*>;
  const Field fields[] = {{&c.target_model, "models.target"},
                          {&c.draft_model, "models.draft"},
                          {&c.gsm8k_train, "models.gsm8k_train"},
                          {&c.gsm8k_test, "models.gsm8k_test"}};
  for (const auto& [value, field] : fields)
    if (value->empty())
      fail(source, ": field '", field, "' is required when any models.* field is set");
  const auto target = check_model_dir(c.target_model, "models.target", source);
  const auto draft = check_model_dir(c.draft_model, "models.draft", source);
  if (target.vocab_size != draft.vocab_size)
    fail(source, ": field 'models.draft': vocabulary ", draft.vocab_size,
         " differs from the target's ", target.vocab_size);
  check_modules(target, c.noise_modules, "family.modules", source);
  check_modules(draft, c.noise_modules, "family.modules", source);
  for (const auto& [path, field] : {fields[2], fields[3]}) {
    if (!fs::is_regular_file(*path))
      fail(source, ": field '", field, "': file '", *path, "' does not exist");
    try {
      if (distill::read_gsm8k(*path).empty()) fail("no questions");
    } catch (const std::exception& e) {
      fail(source, ": field '", field, "': ", e.what());
    }
  }
}

}  // namespace drafteu::eval
