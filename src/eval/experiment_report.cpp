#include "eval/experiment_report.h"

#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>

#include "eval/experiment_config.h"
#include "eval/experiment_detection.h"
#include "util/error.h"
#include "util/file.h"

namespace drafteu::eval {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The paper's numbers (arXiv:2602.01956), keyed "section.method.metric" for its main pair
// (Llama 3.1 8B target, 3B drafts) and "...@1b" for 8B -> 1B drafts: Tables 1-6 and 11-15.
const std::map<std::string, double>& paper_numbers() {
  static const std::map<std::string, double> m{
      // Table 1 (8B -> 3B) and Table 3 (8B -> 1B): RMSE, Spearman.
      {"fidelity.untrained.rmse", 0.3266},
      {"fidelity.untrained.spearman", 0.8781},
      {"fidelity.gkd.rmse", 0.3107},
      {"fidelity.gkd.spearman", 0.8981},
      {"fidelity.minillm.rmse", 0.3029},
      {"fidelity.minillm.spearman", 0.8994},
      {"fidelity.idd.rmse", 0.3166},
      {"fidelity.idd.spearman", 0.9159},
      {"fidelity.fdd.rmse", 0.3140},
      {"fidelity.fdd.spearman", 0.9175},
      {"fidelity.ddd_2x3.rmse", 0.2036},
      {"fidelity.ddd_2x3.spearman", 0.9165},
      {"fidelity.untrained.rmse@1b", 0.5719},
      {"fidelity.untrained.spearman@1b", 0.8189},
      {"fidelity.idd.rmse@1b", 0.5927},
      {"fidelity.idd.spearman@1b", 0.8843},
      {"fidelity.fdd.rmse@1b", 0.5638},
      {"fidelity.fdd.spearman@1b", 0.8899},
      {"fidelity.ddd_2x3.rmse@1b", 0.4437},
      {"fidelity.ddd_2x3.spearman@1b", 0.8951},
      // Table 5 (8B -> 3B) and Table 14 (8B -> 1B): split configurations, RMSE.
      {"fidelity.ddd_1x3.rmse", 0.2050},
      {"fidelity.ddd_3x3.rmse", 0.2024},
      {"fidelity.only_3.rmse", 0.2122},
      {"fidelity.only_6.rmse", 0.2145},
      {"fidelity.only_9.rmse", 0.2129},
      {"fidelity.ddd_1x3.rmse@1b", 0.4388},
      {"fidelity.ddd_3x3.rmse@1b", 0.4478},
      {"fidelity.only_3.rmse@1b", 0.4771},
      {"fidelity.only_6.rmse@1b", 0.4696},
      {"fidelity.only_9.rmse@1b", 0.4674},
      // Table 11 (8B -> 3B) and Table 12 (8B -> 1B): every method at K = 6.
      {"k6.untrained.rmse", 0.3315},
      {"k6.untrained.spearman", 0.8810},
      {"k6.gkd.rmse", 0.3245},
      {"k6.gkd.spearman", 0.8958},
      {"k6.minillm.rmse", 0.3121},
      {"k6.minillm.spearman", 0.8991},
      {"k6.idd.rmse", 0.3680},
      {"k6.idd.spearman", 0.9139},
      {"k6.ddd_2x3.rmse", 0.2145},
      {"k6.ddd_2x3.spearman", 0.9181},
      {"k6.only_6.rmse", 0.2145},
      {"k6.untrained.rmse@1b", 0.5865},
      {"k6.untrained.spearman@1b", 0.8264},
      {"k6.idd.rmse@1b", 0.7705},
      {"k6.idd.spearman@1b", 0.8827},
      {"k6.ddd_2x3.rmse@1b", 0.4696},
      {"k6.ddd_2x3.spearman@1b", 0.8905},
      {"k6.only_6.rmse@1b", 0.4696},
      // Table 4 (8B target) and Table 13 (3B target, in the "@1b" slot: the smaller pair).
      {"proxy.orig.k3.rmse", 0.0436},
      {"proxy.orig.k3.spearman", 0.9945},
      {"proxy.pmix.k3.rmse", 0.0283},
      {"proxy.pmix.k3.spearman", 0.9829},
      {"proxy.orig.k10.rmse", 0.0391},
      {"proxy.orig.k10.spearman", 0.9957},
      {"proxy.pmix.k10.rmse", 0.0137},
      {"proxy.pmix.k10.spearman", 0.9969},
      {"proxy.orig.k3.rmse@1b", 0.0274},
      {"proxy.pmix.k3.rmse@1b", 0.0181},
      {"proxy.orig.k10.rmse@1b", 0.0194},
      {"proxy.pmix.k10.rmse@1b", 0.0104},
      // Table 2: detection; Table 6: AUROC of DDD with 1B drafts.
      {"detection.tokur.auroc", 0.7823},
      {"detection.tokur.ece", 0.0652},
      {"detection.tokur.brier", 0.1495},
      {"detection.untrained.auroc", 0.7853},
      {"detection.untrained.ece", 0.0760},
      {"detection.untrained.brier", 0.1494},
      {"detection.ddd.auroc", 0.7839},
      {"detection.ddd.ece", 0.0576},
      {"detection.ddd.brier", 0.1480},
      {"detection.ddd.auroc@1b", 0.7781},
      // Table 6: FLOPs relative to TokUR at K = 3 (3 target passes).
      {"cost.tokur.relative", 1.00},
      {"cost.ddd.relative", 1.08},
      {"cost.ddd.relative@1b", 0.58},
  };
  return m;
}

std::string paper(const std::string& key) {
  const auto it = paper_numbers().find(key);
  if (it == paper_numbers().end()) return "n/a";
  std::ostringstream os;
  os.precision(3);
  os << it->second;
  return os.str();
}

std::string num(const json& v, int precision = 4) {
  if (!v.is_number()) return "nan";
  const double x = v.get<double>();
  if (!std::isfinite(x)) return "nan";
  std::ostringstream os;
  os.precision(precision);
  os << x;
  return os.str();
}

std::string pm(const json& j, const std::string& k) {
  return num(j.value(k + "_mean", json())) + " ± " + num(j.value(k + "_std", json()), 2);
}

std::string html_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    switch (ch) {
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '&':
        o += "&amp;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += ch;
    }
  }
  return o;
}

// A table as rows of cells; rendered as Markdown, HTML and CSV from one definition.
struct Table {
  std::string title;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  // The title up to its first ',', ':' or '(' as lower-case words joined by '_' (unique per
  // table: "EU fidelity, Tables 1 and 5" -> eu_fidelity, "EU fidelity at K = 6" -> ...at_k_6).
  std::string file_name() const {
    std::string name;
    for (char ch : title.substr(0, title.find_first_of(",:("))) {
      const auto c = static_cast<unsigned char>(ch);
      if (std::isalnum(c))
        name += static_cast<char>(std::tolower(c));
      else if (!name.empty() && name.back() != '_')
        name += '_';
    }
    while (!name.empty() && name.back() == '_') name.pop_back();
    return name;
  }

  std::string markdown() const {
    std::string s = "### " + title + "\n\n|";
    for (const auto& h : header) s += " " + h + " |";
    s += "\n|";
    for (size_t i = 0; i < header.size(); ++i) s += "---|";
    s += "\n";
    for (const auto& r : rows) {
      s += "|";
      for (const auto& c : r) s += " " + c + " |";
      s += "\n";
    }
    return s + "\n";
  }
  std::string html() const {
    std::string s = "<h3>" + html_escape(title) + "</h3>\n<table><tr>";
    for (const auto& h : header) s += "<th>" + html_escape(h) + "</th>";
    s += "</tr>\n";
    for (const auto& r : rows) {
      s += "<tr>";
      for (const auto& c : r) s += "<td>" + html_escape(c) + "</td>";
      s += "</tr>\n";
    }
    return s + "</table>\n";
  }
};

double mean_of(const json& j, const std::string& k) {
  const json v = j.value(k + "_mean", json());
  return v.is_number() ? v.get<double>() : std::nan("");
}

std::string verdict(bool ok, double a, double b) {
  if (!std::isfinite(a) || !std::isfinite(b)) return "n/a";
  return ok ? "yes" : "no";
}

// The paper's findings as issue targets, each checked against this run.
Table findings(const json& r) {
  Table f{"The paper's findings, checked on this run",
          {"finding", "paper", "this run", "reproduced"},
          {}};
  const json& fid = r["eu_fidelity"];
  const json& k6 = r.value("eu_fidelity_k6", json::object());
  const double rho = mean_of(fid["ddd_2x3"], "spearman"), ccc = mean_of(fid["ddd_2x3"], "ccc");
  f.rows.push_back({"DDD 2x3 tracks the true EU: Spearman >= 0.90 and CCC >= 0.8",
                    "Spearman 0.9165 (Table 1); CCC > 0.9 (§5.3)",
                    "Spearman " + num(rho, 3) + ", CCC " + num(ccc, 3),
                    verdict(rho >= 0.90 && ccc >= 0.8, rho, ccc)});
  // RMSE at equal budget (K = 6, Table 11): DDD 2x3 against the best other method.
  double best = std::nan("");
  std::string best_name;
  for (const auto& [m, j] : k6.items()) {
    const double v = mean_of(j, "rmse");
    if (m == "ddd_2x3" || !std::isfinite(v)) continue;
    if (!std::isfinite(best) || v < best) best = v, best_name = m;
  }
  const double ddd6 = k6.contains("ddd_2x3") ? mean_of(k6["ddd_2x3"], "rmse") : std::nan("");
  f.rows.push_back(
      {"DDD 2x3 RMSE <= 0.70x the best other method at K = 6",
       "0.2145 vs 0.3121 (MiniLLM): 0.69x (Table 11)",
       num(ddd6) + " vs " + best_name + " " + num(best) + " (" + num(ddd6 / best, 3) + "x)",
       verdict(ddd6 <= 0.70 * best, ddd6, best)});
  const double rho_u = mean_of(fid["untrained"], "spearman");
  f.rows.push_back({"Untrained drafts already rank tokens: Spearman >= 0.8", "0.8781 (Table 1)",
                    num(rho_u, 3), verdict(rho_u >= 0.8, rho_u, rho_u)});
  const double un = mean_of(fid["untrained"], "rmse"), idd = mean_of(fid["idd"], "rmse"),
               fdd = mean_of(fid["fdd"], "rmse");
  f.rows.push_back({"IDD/FDD initial noise does not destroy the drafts: RMSE <= 1.3x untrained",
                    "0.3166 / 0.3140 vs 0.3266 (Table 1)",
                    num(idd) + " / " + num(fdd) + " vs " + num(un),
                    verdict(idd <= 1.3 * un && fdd <= 1.3 * un, idd, fdd)});
  // p_mix at K = 3 against the unperturbed target at K = 10, in the mean and run by run.
  const json& pm3 = r["proxy"]["pmix"]["k3"];
  const json& or10 = r["proxy"]["orig"]["k10"];
  const double pmix3 = mean_of(pm3, "rmse"), orig10 = mean_of(or10, "rmse");
  size_t wins = 0, runs = 0;
  if (pm3.contains("runs") && or10.contains("runs"))
    for (size_t i = 0; i < std::min(pm3["runs"].size(), or10["runs"].size()); ++i, ++runs)
      wins += pm3["runs"][i]["rmse"].get<double>() < or10["runs"][i]["rmse"].get<double>();
  f.rows.push_back({"p_mix at K = 3 beats the unperturbed target at K = 10 (mean, >= 4 of 5 runs)",
                    "0.0283 vs 0.0391 (Table 4)",
                    num(pmix3) + " vs " + num(orig10) + ", " + std::to_string(wins) + " of " +
                        std::to_string(runs) + " runs",
                    verdict(pmix3 < orig10 && wins * 5 >= runs * 4, pmix3, orig10)});
  // Detection: DDD 2x3 against TokUR (K = 3), and the measured scoring time.
  if (!r["detection"].contains("ddd") || !r["detection"].contains("tokur")) {
    f.rows.push_back({"DDD detects: AUROC >= 0.70 and >= TokUR(K=3) - 0.02, at <= 0.6x its time",
                      "0.7839 vs 0.7823 (Table 2)", "no labels in this task", "n/a"});
    return f;
  }
  const double a_ddd = mean_of(r["detection"]["ddd"], "auroc");
  const double a_tok = mean_of(r["detection"]["tokur"], "auroc");
  const double t_ratio =
      mean_of(r["detection"]["ddd"], "seconds") / mean_of(r["detection"]["tokur"], "seconds");
  const double cpu_ratio = mean_of(r["detection"]["ddd"], "cpu_seconds") /
                           mean_of(r["detection"]["tokur"], "cpu_seconds");
  f.rows.push_back(
      {"DDD detects: AUROC >= 0.70 and >= TokUR(K=3) - 0.02, at <= 0.6x its time",
       "0.7839 vs 0.7823 (Table 2), 0.58-1.08x its FLOPs (Table 6)",
       "AUROC " + num(a_ddd, 3) + " vs " + num(a_tok, 3) + "; time " + num(t_ratio, 3) +
           "x TokUR's (CPU time " + num(cpu_ratio, 3) + "x)",
       verdict(a_ddd >= 0.70 && a_ddd >= a_tok - 0.02 && t_ratio <= 0.6, a_ddd, a_tok)});
  return f;
}

Table fidelity_table(const std::string& title, const json& j, const std::string& section) {
  Table t{title,
          {"method", "RMSE", "paper RMSE (8B->3B)", "paper RMSE (8B->1B)", "Spearman",
           "paper Spearman (8B->3B)", "CCC"},
          {}};
  for (const auto& [m, row] : j.items())
    t.rows.push_back({m, pm(row, "rmse"), paper(section + "." + m + ".rmse"),
                      paper(section + "." + m + ".rmse@1b"), pm(row, "spearman"),
                      paper(section + "." + m + ".spearman"), pm(row, "ccc")});
  return t;
}

// The run's training settings against the paper's (the library defaults, equal to Tables 7-10):
// every setting a preset changed, step by step.
Table budget_table(const json& r) {
  Table t{"Training budgets against the paper's Tables 7-10",
          {"step", "setting", "paper", "this run"},
          {}};
  const json budgets = r.value("budgets", json::object());
  std::vector<std::pair<std::string, json>> steps;
  for (const auto& [step, b] : budgets.items()) {
    if (b.contains("paper")) {
      steps.emplace_back(step, b);
    } else {
      for (const auto& [method, m] : b.items()) steps.emplace_back(step + " " + method, m);
    }
  }
  for (const auto& [step, b] : steps)
    for (const char* k : {"lr", "weight_decay", "schedule", "warmup_steps", "warmup_ratio",
                          "batch_size", "grad_accum", "epochs", "max_steps"})
      if (b["paper"].value(k, json()) != b["run"].value(k, json()))
        t.rows.push_back(
            {step, k, b["paper"].value(k, json()).dump(), b["run"].value(k, json()).dump()});
  return t;
}

Table regime_table(const json& r) {
  Table t{"Regime: the target family and the drafts", {"quantity", "value"}, {}};
  const json& g = r.value("regime", json::object());
  t.rows.push_back({"sigma (" + g.value("sigma_parametrization", std::string()) + ")",
                    num(g.value("sigma", json()))});
  const json rel = g.value("delta_rel", json::object());  // items() must not outlive it
  for (const auto& [m, v] : rel.items()) t.rows.push_back({"‖ΔW‖/‖W‖ " + m, num(v, 3)});
  t.rows.push_back({"target accuracy (same questions)", num(g.value("target_accuracy", json()))});
  std::string acc;
  const json members = g.value("member_accuracy", json::array());
  for (const auto& a : members) acc += num(a, 3) + " ";
  t.rows.push_back({"member accuracy", acc.empty() ? "n/a" : acc});
  t.rows.push_back({"mean true EU per token (nats)", num(g.value("true_eu_mean", json()))});
  t.rows.push_back({"mean KL(untrained draft ‖ target) per token (nats)",
                    num(g.value("draft_kl_to_target", json()))});
  return t;
}

std::vector<Table> tables(const json& r) {
  std::vector<Table> t;
  t.push_back(findings(r));
  if (r.value("task", std::string("arithmetic")) != "stories") {  // stories have no accuracy
    Table tb{"Testbed", {"model", "greedy accuracy"}, {}};
    tb.rows.push_back({"target", num(r["testbed"]["target_accuracy"])});
    tb.rows.push_back({"draft", num(r["testbed"]["draft_accuracy"])});
    t.push_back(tb);
  }
  t.push_back(regime_table(r));
  json fid = json::object();
  for (const auto& m : fidelity_methods()) fid[m] = r["eu_fidelity"][m];
  t.push_back(fidelity_table(
      "EU fidelity, Tables 1 and 5 (EU_hat vs true EU per token; mean ± std over trials)", fid,
      "fidelity"));
  if (r.contains("eu_fidelity_k6"))
    t.push_back(fidelity_table("EU fidelity at K = 6, Table 11", r["eu_fidelity_k6"], "k6"));
  std::string truth;
  if (r.contains("proxy_truth"))
    truth = std::string("; true EU: ") +
            (r["proxy_truth"]["kind"] == "fresh" ? "a fresh family of " : "the target family's ") +
            num(r["proxy_truth"]["members"]) + " members";
  Table px{"Proxy robustness, Table 4 (reference: unperturbed target vs p_mix" + truth + ")",
           {"reference", "K", "RMSE", "paper RMSE (8B)", "paper RMSE (3B)", "Spearman"},
           {}};
  for (const auto& [ref, by_k] : r["proxy"].items())
    for (const auto& [k, j] : by_k.items())
      px.rows.push_back({ref, k.substr(1), pm(j, "rmse"), paper("proxy." + ref + "." + k + ".rmse"),
                         paper("proxy." + ref + "." + k + ".rmse@1b"), pm(j, "spearman")});
  t.push_back(px);
  if (r.contains("proxy_centre_offset")) {
    // mean_k KL(p_k ‖ c) = EU + KL(p̄ ‖ c) on the truth's own members: a centre's offset from
    // their mean is a floor under its bias (experiment_proxy.cpp).
    const json& o = r["proxy_centre_offset"];
    Table off{
        "Proxy centre offsets from the truth family's mean (KL(p̄ ‖ reference), nats per token)",
        {"reference", "KL(p̄ ‖ reference)", "true EU"},
        {}};
    for (const char* ref : {"orig", "pmix"})
      off.rows.push_back({ref, num(o.value(ref, json())), num(o.value("true_eu", json()))});
    t.push_back(off);
  }
  Table det{"Hallucination detection, Table 2 (one-feature logistic map; mean ± std over sets)",
            {"method", "AUROC", "paper AUROC", "ECE", "paper ECE", "Brier", "paper Brier", "PRR",
             "AUROC (sum, mean, max)", "scoring seconds", "scoring CPU seconds"},
            {}};
  for (const auto& m : detection_methods()) {
    if (!r["detection"].contains(m)) continue;
    const json& j = r["detection"][m];
    det.rows.push_back({m, pm(j, "auroc"), paper("detection." + m + ".auroc"), pm(j, "ece"),
                        paper("detection." + m + ".ece"), pm(j, "brier"),
                        paper("detection." + m + ".brier"), pm(j, "prr"), pm(j, "auroc_3feature"),
                        pm(j, "seconds"), pm(j, "cpu_seconds")});
  }
  if (!det.rows.empty()) t.push_back(det);
  Table cost{"Cost per generated token, Table 6",
             {"method", "forwards", "FLOPs/token", "seconds/token", "paper rel. FLOPs"},
             {}};
  for (const auto& [m, j] : r["cost"].items())
    if (j.is_object())
      cost.rows.push_back({m, num(j["forwards_per_token"]), num(j["flops_per_token"]),
                           num(j["seconds_per_token"]), paper("cost." + m + ".relative")});
  if (!cost.rows.empty()) t.push_back(cost);
  t.push_back(budget_table(r));
  return t;
}

void write_csvs(const json& r, const fs::path& out) {
  std::string runs = "method,trial,rmse,spearman,ccc\n";
  std::string summary = "method,rmse_mean,rmse_std,spearman_mean,spearman_std,ccc_mean,ccc_std\n";
  for (const auto& m : fidelity_methods()) {
    const json& j = r["eu_fidelity"][m];
    for (const auto& x : j["runs"])
      runs += m + "," + num(x["trial"]) + "," + num(x["rmse"], 8) + "," + num(x["spearman"], 8) +
              "," + num(x["ccc"], 8) + "\n";
    summary += m;
    for (const char* k :
         {"rmse_mean", "rmse_std", "spearman_mean", "spearman_std", "ccc_mean", "ccc_std"})
      summary.append(",").append(num(j[k], 8));
    summary += "\n";
  }
  write_file_atomic(out / "fidelity_runs.csv", runs);
  write_file_atomic(out / "fidelity.csv", summary);
  std::string proxy = "reference,k,run,rmse,spearman\n";
  for (const auto& [ref, by_k] : r["proxy"].items())
    for (const auto& [k, j] : by_k.items())
      for (const auto& x : j["runs"])
        proxy += ref + "," + k.substr(1) + "," + num(x["run"]) + "," + num(x["rmse"], 8) + "," +
                 num(x["spearman"], 8) + "\n";
  write_file_atomic(out / "proxy_runs.csv", proxy);
  std::string det = "method,set,auroc,ece,brier,prr\n";
  for (const auto& m : detection_methods())
    if (r["detection"].contains(m))
      for (const auto& x : r["detection"][m]["sets"])
        det += m + "," + num(x["set"]) + "," + num(x["auroc"], 8) + "," + num(x["ece"], 8) + "," +
               num(x["brier"], 8) + "," + num(x["prr"], 8) + "\n";
  write_file_atomic(out / "detection_sets.csv", det);
  std::string cost = "method,forwards_per_token,flops_per_token,seconds_per_token\n";
  for (const auto& [m, j] : r["cost"].items())
    if (j.is_object())
      cost += m + "," + num(j["forwards_per_token"]) + "," + num(j["flops_per_token"], 10) + "," +
              num(j["seconds_per_token"], 8) + "\n";
  write_file_atomic(out / "cost.csv", cost);
  for (const auto& t : tables(r)) {  // every table's summary as CSV too
    std::string s;
    for (size_t i = 0; i < t.header.size(); ++i) s += (i ? "," : "") + t.header[i];
    s += "\n";
    for (const auto& row : t.rows) {
      for (size_t i = 0; i < row.size(); ++i) s += (i ? "," : "") + row[i];
      s += "\n";
    }
    write_file_atomic(out / ("table_" + t.file_name() + ".csv"), s);
  }
  for (const char* k :
       {"eu_fidelity", "eu_fidelity_k6", "regime", "proxy", "detection", "cost", "testbed"})
    write_file_atomic(out / (std::string(k) + ".json"), r[k].dump(2) + "\n");
}

// Runs gnuplot on `script` in `dir`; returns the SVG it wrote to dir/name, <svg> element only.
std::string gnuplot_svg(const fs::path& dir, const std::string& name, const std::string& script) {
  write_file_atomic(dir / (name + ".gp"),
                    "set terminal svg size 720,440 font 'sans,12'\nset output '" +
                        (dir / (name + ".svg")).string() + "'\n" + script);
  const std::string cmd = "gnuplot '" + (dir / (name + ".gp")).string() + "' 2>'" +
                          (dir / (name + ".err")).string() + "'";
  if (std::system(cmd.c_str()) != 0)
    fail("experiment: gnuplot failed on ", (dir / (name + ".gp")).string(), ": ",
         read_text_file(dir / (name + ".err")));
  const std::string svg = read_text_file(dir / (name + ".svg"));
  const auto at = svg.find("<svg");
  if (at == std::string::npos) fail("experiment: gnuplot wrote no <svg> to ", name, ".svg");
  return svg.substr(at);
}

std::string figure1(const json& r, const fs::path& dir) {
  std::string data, plot = "plot ";
  int i = 0;
  for (const auto& m : fidelity_methods()) {
    for (const auto& x : r["eu_fidelity"][m]["runs"])
      data += num(x["rmse"], 8) + " " + num(x["spearman"], 8) + "\n";
    data += "\n\n";
    plot += std::string(i ? ", " : "") + "'" + (dir / "fig1.dat").string() + "' index " +
            std::to_string(i) + " with points pt 7 ps 0.8 title '" + m + "'";
    ++i;
  }
  write_file_atomic(dir / "fig1.dat", data);
  return gnuplot_svg(dir, "fig1",
                     "set xlabel 'RMSE (EU_hat vs true EU)'\nset ylabel 'Spearman'\nset key "
                     "outside right\nset grid\n" +
                         plot + "\n");
}

std::string figure2(const json& r, const fs::path& dir) {
  std::vector<std::pair<std::string, std::vector<double>>> cols;
  for (const auto& [ref, by_k] : r["proxy"].items())
    for (const auto& [k, j] : by_k.items()) {
      std::vector<double> v;
      for (const auto& x : j["runs"])
        v.push_back(x["rmse"].is_number() ? x["rmse"].get<double>() : NAN);
      cols.emplace_back(ref + " " + k, v);
    }
  // One column per (reference, K), one row per run.
  std::string data, xtics = "set xtics (";
  size_t rows = 0;
  for (const auto& c : cols) rows = std::max(rows, c.second.size());
  for (size_t i = 0; i < rows; ++i) {
    for (const auto& c : cols)
      data += (i < c.second.size() ? std::to_string(c.second[i]) : std::string("NaN")) + " ";
    data += "\n";
  }
  for (size_t c = 0; c < cols.size(); ++c)
    xtics += std::string(c ? ", " : "") + "'" + cols[c].first + "' " + std::to_string(c + 1);
  write_file_atomic(dir / "fig2.dat", data);
  return gnuplot_svg(dir, "fig2",
                     "set style data boxplot\nset style fill solid 0.4\nset boxwidth 0.5\n"
                     "set ylabel 'RMSE vs large-family EU'\nset xrange [0.3:" +
                         std::to_string(cols.size()) + ".7]\nset grid y\n" + xtics +
                         ")\nplot for [i=1:" + std::to_string(cols.size()) + "] '" +
                         (dir / "fig2.dat").string() + "' using (i):i notitle\n");
}

// Answers of the first set, a few right and a few wrong, each token shaded by its DDD EU_hat.
std::string heat_map(const fs::path& answers) {
  if (answers.empty())
    return "<p>No labelled answers in this task: tokens_fidelity.jsonl holds "
           "every token's EU_hat and true EU.</p>\n";
  std::vector<json> right, wrong;
  std::istringstream in(read_text_file(answers));
  std::string line;
  double top = 1e-12;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json a = json::parse(line);
    if (a["set"] != 0) continue;
    auto& bucket = a["correct"].get<bool>() ? right : wrong;
    if (bucket.size() >= 3) continue;
    for (const auto& v : a["eu"]["ddd"])
      if (v.is_number()) top = std::max(top, v.get<double>());
    bucket.push_back(std::move(a));
  }
  std::ostringstream h;
  h << "<p>Token shading: DDD EU_hat, darkest = " << num(top) << " nats.</p>\n";
  for (const auto* group : {&right, &wrong})
    for (const auto& a : *group) {
      h << "<div class=\"answer\"><b>question " << a["question"] << " ("
        << (a["correct"].get<bool>() ? "right" : "wrong") << ")</b><br>";
      const auto& eu = a["eu"]["ddd"];
      for (size_t i = 0; i < a["pieces"].size(); ++i) {
        const double v = i < eu.size() && eu[i].is_number() ? eu[i].get<double>() : 0.0;
        h << "<span title=\"" << num(eu[i]) << "\" style=\"background:rgba(220,40,40,"
          << std::min(1.0, v / top) << ")\">" << html_escape(a["pieces"][i].get<std::string>())
          << "</span>";
      }
      h << "</div>\n";
    }
  if (right.empty() && wrong.empty()) h << "<p>No answers.</p>\n";
  return h.str();
}

}  // namespace

void require_gnuplot() {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    fail(
        "experiment: gnuplot is not installed; it draws the report's charts (Debian: apt-get "
        "install gnuplot-nox)");
}

std::string summary_markdown(const json& results) {
  std::string s = "# drafteu experiment: preset " + results.value("preset", std::string()) +
                  "\n\nThe paper: arXiv:2602.01956. Its \"paper\" columns give its numbers for "
                  "Llama 3.1 8B with 3B and 1B drafts (Tables 1-6, 11-15); this run's testbed is "
                  "far smaller, so compare directions and ratios, not values. Its findings are "
                  "checked in the first table.\n\n";
  for (const auto& t : tables(results)) s += t.markdown();
  return s;
}

void write_report(const json& results, const fs::path& out, const fs::path& detection_answers) {
  require_gnuplot();
  write_csvs(results, out);
  const std::string md = summary_markdown(results);
  write_file_atomic(out / "summary.md", md);
  const fs::path plots = out / "plots";
  fs::create_directories(plots);
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>drafteu experiment</title>\n"
       "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
       "table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #bbb;"
       "padding:3px 8px;text-align:right}.answer{font-family:monospace;white-space:pre-wrap;"
       "border:1px solid #ddd;margin:6px 0;padding:6px}</style></head><body>\n"
    << "<h1>drafteu experiment: preset " << html_escape(results.value("preset", std::string()))
    << "</h1>\n";
  for (const auto& t : tables(results)) h << t.html();
  h << "<h2>Figure 1: RMSE vs Spearman, one point per run</h2>\n<figure id=\"fig1\">"
    << figure1(results, plots) << "</figure>\n";
  h << "<h2>Figure 2: proxy robustness (RMSE over runs)</h2>\n<figure id=\"fig2\">"
    << figure2(results, plots) << "</figure>\n";
  h << "<h2>Per-token uncertainty</h2>\n" << heat_map(detection_answers);
  h << "</body></html>\n";
  write_file_atomic(out / "report.html", h.str());
}

}  // namespace drafteu::eval
