#include <iostream>

#include "cli/commands.h"
#include "cli/distill_flags.h"
#include "distill/config.h"
#include "distill/osd.h"
#include "util/error.h"

namespace drafteu::cli {

using json = nlohmann::json;

void add_train_proxy_command(CLI::App& app, GlobalOptions&) {
  auto f = std::make_shared<DistillFlags>();
  auto* cmd = app.add_subcommand("train-proxy", "Train p_mix by Online Stochastic Distillation");
  add_distill_flags(cmd, *f, /*training=*/true);
  cmd->callback([f] {
    json c = resolve_config(*f);
    const std::string src = f->config.empty() ? "train-proxy" : f->config;
    // The OSD settings sit at the top level beside the run's inputs.
    json osd_json = c;
    for (const char* run : {"target", "data", "train", "seed"}) osd_json.erase(run);
    const auto osd = distill::osd_config_from_json(osd_json, src, distill::OsdConfig{});
    auto tc = distill::train_config_from_json(c.value("train", json::object()), {src, "train"},
                                              distill::OsdConfig::default_train());
    tc.progress = !f->quiet;
    const std::string data = config_string(c, "data");
    if (data.empty()) fail(src, ": missing field 'data' (or --data)");
    auto samples = distill::read_samples(data);
    auto target = distill::load_model_spec(config_string(c, "target"), "target");
    distill::OsdObjective objective(target.model, osd, tc.seed);
    auto r = distill::train(objective, samples, tc, f->out,
                            {{"command", "train-proxy"}, {"config", c}, {"data", data}});
    std::cout << (r.finished ? "finished " : "stopped at ") << r.steps_done << "/" << r.total_steps
              << " steps, loss " << r.last_loss << "\n";
  });
}

}  // namespace drafteu::cli
