#include <iostream>

#include "cli/commands.h"
#include "cli/distill_flags.h"
#include "distill/config.h"
#include "distill/drafts.h"
#include "util/error.h"

namespace drafteu::cli {

using json = nlohmann::json;

void add_train_drafts_command(CLI::App& app, GlobalOptions&) {
  auto f = std::make_shared<DistillFlags>();
  auto strategy = std::make_shared<std::string>();
  auto splits = std::make_shared<int64_t>(0), per_split = std::make_shared<int64_t>(0);
  auto only = std::make_shared<std::vector<int64_t>>();
  auto job = std::make_shared<int64_t>(-1);
  auto* cmd = app.add_subcommand("train-drafts", "Train a draft family (DDD, IDD or FDD)");
  add_distill_flags(cmd, *f, /*training=*/true);
  cmd->add_option("--strategy", *strategy, "ddd | idd | fdd");
  cmd->add_option("--splits", *splits, "S: data partitions");
  cmd->add_option("--per-split", *per_split, "M: target members per partition");
  cmd->add_option("--only", *only, "s,m: train only draft (s, m)")->delimiter(',')->expected(2);
  cmd->add_option("--job", *job, "train only job i = s*M + m");
  cmd->callback([=] {
    json c = resolve_config(*f);
    const std::string src = f->config.empty() ? "train-drafts" : f->config;
    check_fields(
        c, src,
        {"target", "draft", "data", "train", "lora", "teacher_noise", "init_noise", "init_noise_at",
         "strategy", "splits", "per_split", "partition_seed", "teacher", "seed"});
    if (!strategy->empty()) c["strategy"] = *strategy;
    if (*splits > 0) c["splits"] = *splits;
    if (*per_split > 0) c["per_split"] = *per_split;
    distill::DraftFamilyConfig fam;
    std::string strategy_name = "ddd";
    read_key(c, "strategy", strategy_name, src);
    try {
      fam.strategy = distill::parse_draft_strategy(strategy_name);
    } catch (const Error& e) {
      fail(src, ": field 'strategy' (--strategy): ", e.what());
    }
    read_key(c, "splits", fam.splits, src);
    read_key(c, "per_split", fam.per_split, src);
    read_key(c, "partition_seed", fam.partition_seed, src);
    read_key(c, "teacher", fam.teacher, src);
    read_key(c, "init_noise_at", fam.init_noise_at, src);
    if (c.contains("lora"))
      fam.lora = distill::lora_config_from_json(c["lora"], {src, "lora"}, fam.lora);
    if (c.contains("teacher_noise"))
      fam.teacher_noise = noise_config_from_json(c["teacher_noise"], {src, "teacher_noise"});
    if (c.contains("init_noise"))
      fam.init_noise =
          noise_config_from_json(c["init_noise"], {src, "init_noise"}, NoiseConfig::draft_init(1));
    auto tc = distill::train_config_from_json(c.value("train", json::object()), {src, "train"},
                                              distill::DraftFamilyConfig::default_train());
    tc.progress = !f->quiet;
    auto jobs = distill::plan_draft_family(fam);
    if (only->size() == 2) {
      jobs = {distill::find_draft_job(jobs, (*only)[0], (*only)[1])};
    } else if (*job >= 0) {
      if (*job >= static_cast<int64_t>(jobs.size()))
        fail("--job ", *job, ": the family has jobs 0..", jobs.size() - 1);
      jobs = {jobs[static_cast<size_t>(*job)]};
    }
    const std::string data = config_string(c, "data");
    if (data.empty()) fail(src, ": missing field 'data' (or --data)");
    auto samples = distill::read_samples(data);
    auto target = distill::load_model_spec(config_string(c, "target"), "target");
    const std::string draft_spec = config_string(c, "draft");
    for (const auto& j : jobs) {
      // A fresh draft base per job: jobs must not share state (they may run on other machines).
      auto draft = draft_spec.empty()
                       ? distill::load_model_spec(config_string(c, "target"), "target")
                       : distill::load_model_spec(draft_spec, "draft");
      auto r =
          distill::train_draft_job(draft.model, target.model, samples, fam, j, tc, f->out,
                                   {{"command", "train-drafts"}, {"config", c}, {"data", data}});
      std::cout << j.name() << ": " << (r.finished ? "finished " : "stopped at ") << r.steps_done
                << "/" << r.total_steps << " steps, loss " << r.last_loss << "\n";
    }
  });
}

}  // namespace drafteu::cli
