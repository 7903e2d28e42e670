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

const std::vector<std::string> kSevenModules{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                             "gate_proj", "up_proj", "down_proj"};

// Every field a config may set, with the quick preset's values; other presets patch these.
json quick_preset() {
  return json{
      {"preset", "quick"},
      {"seed", 1},
      {"testbed",
       {{"n_train", 3000},
        {"n_test", 200},
        {"difficulty", 0.0},
        {"min_steps", 2},
        {"max_steps", 2},
        {"vocab", 768},
        {"target_hidden", 96},
        {"target_layers", 3},
        {"target_steps", 1200},
        {"draft_hidden", 96},
        {"draft_layers", 2},
        {"draft_steps", 1800},  // KL(draft ‖ target) 0.004 nats/token; at 600 steps 0.07
        {"draft_distill", true},
        {"batch_size", 16},
        {"dtype", "auto"}}},
      {"models", {{"target", ""}, {"draft", ""}, {"gsm8k_train", ""}, {"gsm8k_test", ""}}},
      {"family",
       {{"members", 3},
        {"sigma", 0.2},
        {"relative", true},
        {"rank", 8},
        {"modules", kSevenModules}}},
      {"data",
       {{"prompts", 48}, {"proxy_answers", 5}, {"draft_answers", 4}, {"max_new_tokens", 96}}},
      {"train",
       {{"proxy_steps", 80},
        {"osd_teachers", "family"},
        {"draft_steps", 24},
        {"pool_splits", 3},
        {"init_sigma", 0.5},
        {"baseline_steps", 12},
        {"batch_size", 4},
        {"proxy_lr", 3e-3},
        {"draft_lr", 3e-4},  // a fine-tune of a base this close; 3e-3 pulls DDD drafts away
        {"lora_rank", 16}}},
      {"fidelity", {{"questions", 8}, {"trials", 5}, {"draft_sigma", 0.1}}},
      {"proxy", {{"k", {3, 10}}, {"truth_members", 20}, {"runs", 5}, {"questions", 4}}},
      {"detection",
       {{"questions", 80},
        {"sets", 3},
        {"train_fraction", 0.5},
        {"tokur_samples", 3},
        {"tokur_extra_samples", 10},
        {"aggregate", "mean"},
        {"ddd_method", "ddd_2x3"}}},
      {"cost", {{"answers", 4}}}};
}

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
          {"draft_steps", 20}}},
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
  fail("experiment: unknown preset '", name, "' (known: tiny, quick, full)");
}

// Overlays `patch` on `base`; a key `base` lacks is an unknown field.
void overlay(json& base, const json& patch, const std::string& source, const std::string& path) {
  if (!patch.is_object())
    fail(source, ": ", path.empty() ? "the config" : "'" + path + "'", " must be a JSON object");
  for (const auto& [key, value] : patch.items()) {
    const std::string field = path.empty() ? key : path + "." + key;
    if (!base.contains(key)) fail(source, ": unknown field '", field, "'");
    if (base[key].is_object())
      overlay(base[key], value, source, field);
    else
      base[key] = value;
  }
}

// Typed access that names the field in errors.
struct Reader {
  const json& root;
  const std::string& source;
  const json& at(const std::string& path) const {
    const json* node = &root;
    size_t start = 0;
    while (true) {
      const size_t dot = path.find('.', start);
      node = &node->at(path.substr(start, dot == std::string::npos ? dot : dot - start));
      if (dot == std::string::npos) return *node;
      start = dot + 1;
    }
  }
  template <typename T>
  T get(const std::string& path) const {
    const json& v = at(path);
    if (!json_integers_fit<T>(v))
      fail(source, ": field '", path, "' must hold integers (got ", v.dump(), ")");
    try {
      return v.get<T>();
    } catch (const json::exception&) {
      fail(source, ": field '", path, "' has the wrong type (", v.dump(), ")");
    }
  }
  // Sizes, counts and steps: at most INT32_MAX, so none wraps in an int (testbed.vocab) or
  // overflows in arithmetic on it (the testbed's widths are multiplied by 8).
  int64_t positive(const std::string& path) const {
    const json& v = at(path);
    constexpr int64_t kMax = 2147483647;
    if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > kMax ||
        (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(kMax)))
      fail(source, ": field '", path, "' must be a positive integer of at most ", kMax, " (got ",
           v.dump(), ")");
    return v.get<int64_t>();
  }
  double number(const std::string& path, double lo, double hi) const {
    const json& v = at(path);
    if (!v.is_number() || v.get<double>() < lo || v.get<double>() > hi)
      fail(source, ": field '", path, "' must be a number in [", lo, ", ", hi, "] (got ", v.dump(),
           ")");
    return v.get<double>();
  }
};

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

std::vector<std::string> experiment_preset_names() {
  return {"tiny", "quick", "full"};
}

json experiment_preset(const std::string& name) {
  json base = quick_preset();
  overlay(base, patch_for(name), "preset " + name, "");
  base["preset"] = name;
  return base;
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
  json j = experiment_preset(preset);
  overlay(j, overrides, source, "");
  j["preset"] = preset;
  const Reader r{j, source};
  ExperimentConfig c;
  c.preset = preset;
  c.json = j;
  c.seed = r.get<uint64_t>("seed");
  auto& tb = c.testbed;
  tb.n_train = static_cast<size_t>(r.positive("testbed.n_train"));
  tb.n_test = static_cast<size_t>(r.positive("testbed.n_test"));
  tb.eval_problems = std::min<size_t>(tb.n_test, 200);
  tb.task.difficulty = r.number("testbed.difficulty", 0, 1);
  tb.task.min_steps = static_cast<int>(r.number("testbed.min_steps", 2, 4));
  tb.task.max_steps = static_cast<int>(r.number("testbed.max_steps", tb.task.min_steps, 4));
  tb.bpe.vocab_size = static_cast<int>(r.positive("testbed.vocab"));
  const int64_t th = r.positive("testbed.target_hidden"), dh = r.positive("testbed.draft_hidden");
  // SwiGLU's ~8/3 ratio rounded to 16, as `drafteu testbed` does.
  tb.target_shape = {th, std::max<int64_t>(16, th * 8 / 3 / 16 * 16),
                     r.positive("testbed.target_layers"), 4, 4};
  tb.target_train.steps = r.positive("testbed.target_steps");
  tb.target_train.batch_size = r.positive("testbed.batch_size");
  tb.target_train.warmup = std::min<int64_t>(50, tb.target_train.steps / 10);
  tb.drafts[0].shape = {dh, std::max<int64_t>(16, dh * 8 / 3 / 16 * 16),
                        r.positive("testbed.draft_layers"), 4, 4};
  tb.drafts[0].train.steps = r.positive("testbed.draft_steps");
  tb.drafts[0].train.batch_size = r.positive("testbed.batch_size");
  tb.drafts[0].train.warmup = std::min<int64_t>(50, tb.drafts[0].train.steps / 10);
  tb.drafts[0].distill_from_target = r.get<bool>("testbed.draft_distill");
  tb.target_train.dtype = tb.drafts[0].train.dtype =
      parse_compute_dtype(r.get<std::string>("testbed.dtype"), source + ": testbed.dtype");
  c.target_model = r.get<std::string>("models.target");
  c.draft_model = r.get<std::string>("models.draft");
  c.gsm8k_train = r.get<std::string>("models.gsm8k_train");
  c.gsm8k_test = r.get<std::string>("models.gsm8k_test");
  c.members = r.positive("family.members");
  c.sigma = r.number("family.sigma", 0, 10);
  c.relative_noise = r.get<bool>("family.relative");
  c.noise_rank = r.positive("family.rank");
  c.noise_modules = r.get<std::vector<std::string>>("family.modules");
  c.data_prompts = r.positive("data.prompts");
  c.proxy_answers = r.positive("data.proxy_answers");
  c.draft_answers = r.positive("data.draft_answers");
  c.max_new_tokens = r.positive("data.max_new_tokens");
  c.proxy_steps = r.positive("train.proxy_steps");
  c.draft_steps = r.positive("train.draft_steps");
  c.baseline_steps = r.positive("train.baseline_steps");
  c.osd_teachers = r.get<std::string>("train.osd_teachers");
  if (c.osd_teachers != "family" && c.osd_teachers != "posterior")
    fail(source, ": field 'train.osd_teachers' must be 'family' or 'posterior' (got '",
         c.osd_teachers, "')");
  c.pool_splits = r.positive("train.pool_splits");
  c.init_sigma = r.number("train.init_sigma", 0, 10);
  c.batch_size = r.positive("train.batch_size");
  c.proxy_lr = r.number("train.proxy_lr", 0, 1);
  c.draft_lr = r.number("train.draft_lr", 0, 1);
  c.lora_rank = r.positive("train.lora_rank");
  c.eval_questions = r.positive("fidelity.questions");
  c.trials = r.positive("fidelity.trials");
  c.draft_sigma = r.number("fidelity.draft_sigma", 0, 10);
  c.proxy_k = r.get<std::vector<int64_t>>("proxy.k");
  c.proxy_truth_members = r.positive("proxy.truth_members");
  c.proxy_runs = r.positive("proxy.runs");
  c.proxy_questions = r.positive("proxy.questions");
  c.detection_questions = r.positive("detection.questions");
  c.detection_sets = r.positive("detection.sets");
  c.train_fraction = r.number("detection.train_fraction", 0.05, 0.95);
  c.tokur_samples = r.positive("detection.tokur_samples");
  c.tokur_extra_samples = r.positive("detection.tokur_extra_samples");
  c.detection_aggregate = r.get<std::string>("detection.aggregate");
  if (c.detection_aggregate != "sum" && c.detection_aggregate != "mean" &&
      c.detection_aggregate != "max")
    fail(source, ": field 'detection.aggregate' must be one of sum, mean, max (got '",
         c.detection_aggregate, "')");
  c.detection_ddd = r.get<std::string>("detection.ddd_method");
  c.cost_answers = r.positive("cost.answers");
  if (c.proxy_k.empty()) fail(source, ": field 'proxy.k' must list at least one K");
  for (auto k : c.proxy_k)
    if (k < 2) fail(source, ": field 'proxy.k': K must be at least 2 (got ", k, ")");
  if (c.members < 2) fail(source, ": field 'family.members' must be at least 2");
  if (c.pool_splits < 3)
    fail(source, ": field 'train.pool_splits' must be at least 3 (the 3x3 configuration)");
  if (std::find(fidelity_methods().begin(), fidelity_methods().end(), c.detection_ddd) ==
      fidelity_methods().end())
    fail(source, ": field 'detection.ddd_method': unknown method '", c.detection_ddd, "'");
  if (c.detection_questions < 4)
    fail(source, ": field 'detection.questions' must be at least 4 (a train and a test split)");
  if (c.noise_modules.empty()) fail(source, ": field 'family.modules' is empty");
  return c;
}

void validate_experiment_config(const ExperimentConfig& c, const std::string& source) {
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
