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
#include "util/error.h"
#include "util/file.h"

namespace drafteu::eval {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The paper's numbers, keyed "section.method.metric". None is filled in yet: no number was at
// hand that could be checked against the paper, and a wrong one is worse than "n/a".
const std::map<std::string, double>& paper_numbers() {
  static const std::map<std::string, double> m{};
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

// The paper's qualitative findings (arXiv:2602.01956), each checked against this run.
Table findings(const json& r) {
  Table f{"The paper's findings, checked on this run",
          {"finding", "paper", "this run", "reproduced"},
          {}};
  // 1. DDD's estimate is the closest: lowest RMSE, goal <= 0.75x the best baseline.
  double ddd = std::nan(""), base = std::nan("");
  std::string ddd_name, base_name;
  for (const auto& m : fidelity_methods()) {
    const double v = mean_of(r["eu_fidelity"][m], "rmse");
    if (!std::isfinite(v)) continue;
    const bool is_ddd = m.rfind("ddd_", 0) == 0;
    double& best = is_ddd ? ddd : base;
    if (!std::isfinite(best) || v < best) {
      best = v;
      (is_ddd ? ddd_name : base_name) = m;
    }
  }
  const double ratio = ddd / base;
  f.rows.push_back({"DDD has the lowest EU RMSE (goal: <= 0.75x the best baseline)",
                    "RMSE up to 37% below the baselines (GSM8K, Llama 3)",
                    ddd_name + " " + num(ddd) + " vs " + base_name + " " + num(base) + " (" +
                        num(ratio, 3) + "x)",
                    verdict(ratio <= 0.75, ddd, base)});
  // 2. The OSD proxy at K = 3 beats the unperturbed target at K = 10 (Table 4).
  const double pmix3 = mean_of(r["proxy"]["pmix"]["k3"], "rmse");
  const double orig10 = mean_of(r["proxy"]["orig"]["k10"], "rmse");
  f.rows.push_back({"p_mix at K = 3 beats the unperturbed target at K = 10",
                    "p_mix K=3 has lower RMSE than orig K=10 (Table 4)",
                    "p_mix K=3 " + num(pmix3) + " vs orig K=10 " + num(orig10),
                    verdict(pmix3 < orig10, pmix3, orig10)});
  // 3. DDD detects hallucinations about as well as TokUR at a fraction of its cost.
  const double a_ddd = mean_of(r["detection"]["ddd"], "auroc");
  const double a_tok = mean_of(r["detection"]["tokur"], "auroc");
  const json& cost = r["cost"];
  double cost_ratio = std::nan("");
  if (cost.contains("ddd") && cost.contains("tokur"))
    cost_ratio = cost["ddd"].value("seconds_per_token", std::nan("")) /
                 cost["tokur"].value("seconds_per_token", std::nan(""));
  f.rows.push_back({"DDD's AUROC is at most 0.02 below TokUR's, at well under its cost",
                    "competitive with TokUR at negligible inference cost (Table 2, Table 6)",
                    "AUROC " + num(a_ddd, 3) + " vs " + num(a_tok, 3) + "; time " +
                        num(cost_ratio, 3) + "x TokUR's",
                    verdict(a_ddd >= a_tok - 0.02 && cost_ratio < 0.5, a_ddd, a_tok)});
  return f;
}

std::vector<Table> tables(const json& r) {
  std::vector<Table> t;
  t.push_back(findings(r));
  Table tb{"Testbed", {"model", "greedy accuracy"}, {}};
  tb.rows.push_back({"target", num(r["testbed"]["target_accuracy"])});
  tb.rows.push_back({"draft", num(r["testbed"]["draft_accuracy"])});
  t.push_back(tb);
  Table fid{"EU fidelity (EU_hat vs true EU, per token; mean ± std over trials)",
            {"method", "RMSE", "paper RMSE", "Spearman", "paper Spearman", "CCC"},
            {}};
  for (const auto& m : fidelity_methods()) {
    const json& j = r["eu_fidelity"][m];
    fid.rows.push_back({m, pm(j, "rmse"), paper("fidelity." + m + ".rmse"), pm(j, "spearman"),
                        paper("fidelity." + m + ".spearman"), pm(j, "ccc")});
  }
  t.push_back(fid);
  Table px{"Proxy robustness (reference: unperturbed target vs p_mix)",
           {"reference", "K", "RMSE", "paper RMSE", "Spearman"},
           {}};
  for (const auto& [ref, by_k] : r["proxy"].items())
    for (const auto& [k, j] : by_k.items())
      px.rows.push_back({ref, k.substr(1), pm(j, "rmse"), paper("proxy." + ref + "." + k + ".rmse"),
                         pm(j, "spearman")});
  t.push_back(px);
  Table det{"Hallucination detection (mean ± std over answer sets)",
            {"method", "AUROC", "paper AUROC", "ECE", "Brier", "PRR"},
            {}};
  for (const std::string m : {"ddd", "untrained", "tokur"}) {
    const json& j = r["detection"][m];
    det.rows.push_back({m, pm(j, "auroc"), paper("detection." + m + ".auroc"), pm(j, "ece"),
                        pm(j, "brier"), pm(j, "prr")});
  }
  t.push_back(det);
  Table cost{"Cost per generated token",
             {"method", "forwards", "FLOPs/token", "seconds/token", "paper FLOPs/token"},
             {}};
  for (const auto& [m, j] : r["cost"].items())
    if (j.is_object())
      cost.rows.push_back({m, num(j["forwards_per_token"]), num(j["flops_per_token"]),
                           num(j["seconds_per_token"]), paper("cost." + m + ".flops")});
  t.push_back(cost);
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
  for (const std::string m : {"ddd", "untrained", "tokur"})
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
    std::string name = t.title.substr(0, t.title.find(' '));
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    write_file_atomic(out / ("table_" + name + ".csv"), s);
  }
  for (const char* k : {"eu_fidelity", "proxy", "detection", "cost", "testbed"})
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
                  "\n\nThe paper: arXiv:2602.01956. Its per-table numbers are not shipped with "
                  "drafteu, so the per-table \"paper\" columns read \"n/a\"; its headline "
                  "findings are checked in the first table.\n\n";
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
