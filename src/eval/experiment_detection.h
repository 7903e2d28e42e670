// Step 5: hallucination detection. Each set holds one sampled target answer per test question,
// judged right or wrong against the reference; sequence-level EU (sum, mean, max) of a method
// feeds a logistic regression fit on the first part of the set and scored on the rest (AUROC,
// ECE with 15 bins, Brier, PRR). Methods: DDD drafts, untrained drafts, TokUR.
#pragma once
#include <filesystem>

#include "eval/experiment_methods.h"

namespace drafteu::eval {

const std::vector<std::string>& detection_methods();  // ddd, untrained, tokur

// Writes dir/results.json ({METHOD: {auroc_mean, ..., sets}, "accuracy": [...]}) and
// dir/answers.jsonl (every answer with its per-token EU under each method, for the heat map).
void run_detection(const ExperimentConfig& c, MethodModels& models,
                   const std::filesystem::path& dir);

}  // namespace drafteu::eval
