#include "family/draft_family.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "family/peft.h"
#include "util/config_fields.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace drafteu {

namespace fs = std::filesystem;
using json = nlohmann::json;

const config::Fields<NoiseConfig>& noise_config_fields() {
  static const config::Fields<NoiseConfig> f = [] {
    config::Fields<NoiseConfig> n;
    n.custom(
         "kind", [](const NoiseConfig& c) { return std::optional<json>(noise_kind_name(c.kind)); },
         [](NoiseConfig& c, const json& j, const config::Where& w) {
           const auto name = config::Codec<std::string>::read(j, w);
           try {
             c.kind = parse_noise_kind(name);
           } catch (const Error& e) {
             config::fail_field(w, e.what());
           }
         })
        .field("target_modules", &NoiseConfig::target_modules)
        .field("rank", &NoiseConfig::rank)
        .field("sigma", &NoiseConfig::sigma)
        .field("alpha", &NoiseConfig::alpha)  // written only when set
        .field("seed", &NoiseConfig::seed)
        .field("per_token", &NoiseConfig::per_token)
        .field("keep_unperturbed", &NoiseConfig::keep_unperturbed)
        // Written only when true: keys written before the field existed stay the same.
        .custom(
            "relative",
            [](const NoiseConfig& c) {
              return c.relative ? std::optional<json>(true) : std::nullopt;
            },
            [](NoiseConfig& c, const json& j, const config::Where& w) {
              c.relative = config::Codec<bool>::read(j, w);
            })
        .rule([](const NoiseConfig& c, const config::Where& w) {
          try {
            c.validate();
          } catch (const Error& e) {
            fail(w.label(), ": ", e.what());
          }
        });
    return n;
  }();
  return f;
}

nlohmann::json to_json(const NoiseConfig& c) {
  return noise_config_fields().to_json(c);
}

NoiseConfig noise_config_from_json(const nlohmann::json& j, const config::Where& where,
                                   NoiseConfig c) {
  return noise_config_fields().from_json(j, where, std::move(c));
}

MemberDeltas combine_deltas(const MemberDeltas& a, const MemberDeltas& b) {
  MemberDeltas out = a;
  for (const auto& [name, t] : b) {
    auto it = out.find(name);
    if (it == out.end()) {
      out[name] = t;
      continue;
    }
    const LowRankTerm& u = it->second;
    if (u.per_token() || t.per_token()) fail("combine_deltas: per-token terms cannot be combined");
    LowRankTerm sum;
    sum.a = torch::cat({u.a, t.a}, 0);
    sum.b = torch::cat({u.b * u.scale, t.b * t.scale}, 1);
    sum.scale = 1.0;
    it->second = sum;
  }
  return out;
}

namespace {

struct FoundDraft {
  int64_t index = 0;
  fs::path dir;
  json desc;  // draft.json
};

// The family's draft-*/ directories with their draft.json, in job order.
std::vector<FoundDraft> find_drafts(const fs::path& family_dir) {
  if (!fs::is_directory(family_dir)) fail(family_dir.string(), ": not a directory");
  std::vector<FoundDraft> found;
  for (const auto& e : fs::directory_iterator(family_dir))
    if (e.is_directory() && e.path().filename().string().rfind("draft-", 0) == 0 &&
        fs::exists(e.path() / "draft.json"))
      found.push_back({0, e.path(), {}});
  if (found.empty()) fail(family_dir.string(), ": holds no draft-*/draft.json");
  for (auto& f : found) {
    f.desc = read_json_file(f.dir / "draft.json");
    f.index = f.desc.at("index").get<int64_t>();
  }
  std::sort(found.begin(), found.end(),
            [](const FoundDraft& x, const FoundDraft& y) { return x.index < y.index; });
  return found;
}

}  // namespace

LowRankFamily load_draft_family(const fs::path& family_dir, LlamaForCausalLM draft_base) {
  std::vector<MemberDeltas> members;
  for (const auto& f : find_drafts(family_dir)) {
    const fs::path adapter_dir = f.dir / "adapter";
    if (!fs::exists(adapter_dir / "adapter_config.json"))
      fail(f.dir.string(), ": draft has no finished adapter/ (still training?)");
    auto lora = load_peft_adapter(adapter_dir, *draft_base);
    MemberDeltas m = lora->to_member();
    if (f.desc.at("init_noise").get<bool>()) {
      auto noise =
          noise_config_from_json(f.desc.at("init_noise_config"), (f.dir / "draft.json").string());
      MemberDeltas start = NoiseSampler(*draft_base, noise).member(f.index);
      const auto at = f.desc.find("init_noise_at");
      if (at != f.desc.end() && !(*at == "adapter" || *at == "frozen" || *at == "lora_a"))
        fail((f.dir / "draft.json").string(),
             ": 'init_noise_at' must be \"frozen\", \"adapter\" or \"lora_a\"");
      // Noise that started the adapter lives on in its trained factors; "lora_a" noise was
      // only lora_A's start.
      if (at != f.desc.end() && *at == "lora_a") start.clear();
      if (at != f.desc.end() && *at == "adapter")
        for (const auto& name : lora->module_names()) start.erase(name);
      m = combine_deltas(start, m);
    }
    members.push_back(std::move(m));
  }
  return LowRankFamily(draft_base, std::move(members));
}

std::vector<int64_t> draft_family_members(const fs::path& family_dir) {
  std::vector<int64_t> out;
  for (const auto& f : find_drafts(family_dir)) {
    const auto it = f.desc.find("member");
    if (it == f.desc.end() || !it->is_number_integer() || it->get<int64_t>() < 0)
      fail((f.dir / "draft.json").string(), ": 'member' must be a non-negative integer");
    out.push_back(it->get<int64_t>());
  }
  return out;
}

LowRankFamily noisy_draft_family(LlamaForCausalLM draft_base, const MemberDeltas& trained,
                                 int64_t k, const NoiseConfig& noise) {
  if (k < 1) fail("noisy draft family: K must be >= 1, got ", k);
  NoiseSampler sampler(*draft_base, noise);
  std::vector<MemberDeltas> members;
  for (int64_t i = 0; i < k; ++i) members.push_back(combine_deltas(trained, sampler.member(i)));
  return LowRankFamily(draft_base, std::move(members));
}

}  // namespace drafteu
