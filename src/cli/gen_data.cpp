#include <iostream>

#include "cli/commands.h"
#include "cli/distill_flags.h"
#include "distill/config.h"
#include "distill/gen_data.h"
#include "distill/manifest.h"
#include "util/error.h"

namespace drafteu::cli {

using json = nlohmann::json;

void add_gen_data_command(CLI::App& app, GlobalOptions&) {
  auto f = std::make_shared<DistillFlags>();
  auto prompts = std::make_shared<std::string>();
  auto members = std::make_shared<std::vector<int64_t>>();
  auto responses = std::make_shared<int64_t>(0);
  auto shard = std::make_shared<std::vector<int64_t>>();
  auto* cmd =
      app.add_subcommand("gen-data", "Sample distillation responses from target-family members");
  add_distill_flags(cmd, *f, /*training=*/false);
  cmd->add_option("--prompts", *prompts, "GSM8K-format JSONL ({\"question\", \"answer\"})");
  cmd->add_option("--members", *members, "family members to sample from (-1 = the plain target)");
  cmd->add_option("--responses", *responses, "responses per prompt and member");
  cmd->add_option("--shard", *shard, "S,s: only prompt shard s of S")->delimiter(',')->expected(2);
  cmd->callback([=] {
    json c = resolve_config(*f);
    const std::string src = f->config.empty() ? "gen-data" : f->config;
    check_fields(
        c, src,
        {"target", "prompts", "max_prompts", "members", "responses", "noise", "temperature",
         "top_p", "max_new_tokens", "batch_size", "seed", "shards", "shard", "shard_seed"});
    if (!prompts->empty()) c["prompts"] = *prompts;
    if (!members->empty()) c["members"] = *members;
    if (*responses > 0) c["responses"] = *responses;
    if (shard->size() == 2) c["shards"] = (*shard)[0], c["shard"] = (*shard)[1];
    distill::GenDataConfig g;
    g.prompts = config_string(c, "prompts");
    if (g.prompts.empty()) fail(src, ": missing field 'prompts' (or --prompts)");
    read_key(c, "max_prompts", g.max_prompts, src);
    read_key(c, "members", g.members, src);
    read_key(c, "responses", g.responses, src);
    if (c.contains("noise")) g.noise = noise_config_from_json(c["noise"], {src, "noise"});
    g.sampling.temperature = g.sampling.top_p = 1.0;  // sample the members' own distributions
    read_key(c, "temperature", g.sampling.temperature, src);
    read_key(c, "top_p", g.sampling.top_p, src);
    read_key(c, "max_new_tokens", g.max_new_tokens, src);
    read_key(c, "batch_size", g.batch_size, src);
    read_key(c, "seed", g.seed, src);
    read_key(c, "shards", g.shards, src);
    read_key(c, "shard", g.shard, src);
    read_key(c, "shard_seed", g.shard_seed, src);
    g.progress = !f->quiet;
    auto target = distill::load_model_spec(config_string(c, "target"), "target");
    const std::filesystem::path out = f->out;
    const auto file =
        out / (g.shards > 1 ? cat("samples-shard", g.shard, ".jsonl") : "samples.jsonl");
    auto r = distill::generate_data(target, g, file);
    distill::write_manifest(out, {{"command", "gen-data"},
                                  {"config", c},
                                  {"prompts_sha256", distill::sha256_file(g.prompts)},
                                  {"file", file.string()},
                                  {"lines", r.existing + r.written},
                                  {"expected_lines", r.total}});
    std::cout << file.string() << ": " << r.written << " new lines, " << r.existing
              << " already there" << (r.dropped_torn_line ? " (dropped a torn last line)" : "")
              << "\n";
  });
}

}  // namespace drafteu::cli
