// The experiment's outputs beside results.json: CSV and JSON per table, summary.md (each table
// with the paper's number beside ours) and a self-contained report.html whose charts gnuplot draws
// as SVG (Figure 1: RMSE vs Spearman per run; Figure 2: proxy-robustness box plots) plus a
// per-token EU heat map over a few right and wrong answers.
#pragma once
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace drafteu::eval {

// Throws drafteu::Error when gnuplot is not on PATH.
void require_gnuplot();

// Markdown tables of `results` (the summary printed at the end of a run).
std::string summary_markdown(const nlohmann::json& results);

// Writes out/summary.md, out/report.html and the CSV/JSON tables.
void write_report(const nlohmann::json& results, const std::filesystem::path& out,
                  const std::filesystem::path& detection_answers);

}  // namespace drafteu::eval
