// Scalar evaluation metrics in double precision: fidelity of estimated vs true EU (RMSE,
// correlations) and hallucination detection (AUROC, ECE, Brier, PRR). Torch-free.
#pragma once
#include <vector>

namespace drafteu::stats {

double mean(const std::vector<double>& x);
double rmse(const std::vector<double>& a, const std::vector<double>& b);
double pearson(const std::vector<double>& a, const std::vector<double>& b);
// 1-based ranks, ties get the average of the ranks they span.
std::vector<double> average_ranks(const std::vector<double>& x);
double spearman(const std::vector<double>& a, const std::vector<double>& b);
// Lin's concordance correlation coefficient (population moments): agreement, not just order.
double concordance(const std::vector<double>& a, const std::vector<double>& b);

// Area under the ROC curve of `score` for labels (1 = positive): the Mann-Whitney probability
// that a positive outscores a negative, ties counting one half. NaN without both classes.
double auroc(const std::vector<double>& score, const std::vector<int>& label);
// Expected calibration error with `bins` equal-width bins on [0, 1] (bin i = [i/B, (i+1)/B),
// the last one closed): sum over bins of (count/N) * |mean label - mean prob|.
double expected_calibration_error(const std::vector<double>& prob, const std::vector<int>& label,
                                  int bins = 15);
double brier_score(const std::vector<double>& prob, const std::vector<int>& label);
// Prediction-rejection ratio: reject the most uncertain first, average the accuracy of the
// rest over rejection counts 0..N-1; PRR = (A_unc - A_random) / (A_oracle - A_random), where
// the oracle rejects the wrong answers first. Ties in uncertainty are rejected in expectation
// (as random order within the tie). NaN when all answers are right or all wrong.
double prediction_rejection_ratio(const std::vector<double>& uncertainty,
                                  const std::vector<int>& correct);

struct MeanStd {
  double mean = 0, std = 0;  // sample standard deviation (n - 1); 0 for a single value
};
MeanStd mean_std(const std::vector<double>& x);

}  // namespace drafteu::stats
