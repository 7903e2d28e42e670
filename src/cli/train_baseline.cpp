#include <iostream>

#include "cli/commands.h"
#include "cli/distill_flags.h"
#include "distill/config.h"
#include "distill/gkd.h"
#include "distill/minillm.h"
#include "util/error.h"

namespace drafteu::cli {

using json = nlohmann::json;

void add_train_baseline_command(CLI::App& app, GlobalOptions&) {
  auto f = std::make_shared<DistillFlags>();
  auto method = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("train-baseline", "Train a GKD or MiniLLM draft baseline");
  add_distill_flags(cmd, *f, /*training=*/true);
  cmd->add_option("--method", *method, "gkd | minillm")->required();
  cmd->callback([=] {
    json c = resolve_config(*f);
    const std::string src = f->config.empty() ? "train-baseline" : f->config;
    check_fields(c, src,
                 {"target", "draft", "data", "train", "lora", "teacher_noise", "teacher_member",
                  "gkd", "minillm", "seed"});
    if (*method != "gkd" && *method != "minillm")
      fail("--method: unknown baseline '", *method, "' (known: gkd, minillm)");
    LoraConfig lora;
    if (c.contains("lora")) lora = distill::lora_config_from_json(c["lora"], {src, "lora"}, lora);
    const std::string data = config_string(c, "data");
    if (data.empty()) fail(src, ": missing field 'data' (or --data)");
    auto samples = distill::read_samples(data);
    auto target = distill::load_model_spec(config_string(c, "target"), "target");
    const std::string draft_spec = config_string(c, "draft");
    auto student = draft_spec.empty()
                       ? distill::load_model_spec(config_string(c, "target"), "target")
                       : distill::load_model_spec(draft_spec, "draft");
    distill::Teacher teacher{target.model, {}};
    if (c.contains("teacher_member") && !c["teacher_member"].is_null()) {
      auto noise = c.contains("teacher_noise")
                       ? noise_config_from_json(c["teacher_noise"], {src, "teacher_noise"})
                       : NoiseConfig::target_family(0);
      teacher.deltas =
          NoiseSampler(*target.model, noise).member(c["teacher_member"].get<int64_t>());
    }
    const json info = {{"command", "train-baseline"}, {"config", c}, {"data", data}};
    distill::TrainResult r;
    if (*method == "gkd") {
      distill::GkdConfig g;
      g.lora = lora;
      const json gj = c.value("gkd", json::object());
      check_fields(gj, src + " gkd", {"lambda", "beta", "temperature", "top_p", "max_new_tokens"});
      g = distill::gkd_config_from_json(gj, {src, "gkd"}, g);
      auto tc = distill::train_config_from_json(c.value("train", json::object()), {src, "train"},
                                                distill::GkdConfig::default_train());
      tc.progress = !f->quiet;
      distill::GkdObjective objective(student.model, teacher, g, tc.seed);
      r = distill::train(objective, samples, tc, f->out, info);
    } else {
      distill::MiniLLMConfig m;
      m.lora = lora;
      const json mj = c.value("minillm", json::object());
      check_fields(mj, src + " minillm", {"generations", "temperature", "top_p", "max_new_tokens"});
      m = distill::minillm_config_from_json(mj, {src, "minillm"}, m);
      auto tc = distill::train_config_from_json(c.value("train", json::object()), {src, "train"},
                                                distill::MiniLLMConfig::default_train());
      tc.progress = !f->quiet;
      distill::MiniLLMObjective objective(student.model, teacher, m, tc.seed);
      r = distill::train(objective, samples, tc, f->out, info);
    }
    std::cout << (r.finished ? "finished " : "stopped at ") << r.steps_done << "/" << r.total_steps
              << " steps, loss " << r.last_loss << "\n";
  });
}

}  // namespace drafteu::cli
