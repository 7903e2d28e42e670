// GSM8K final answers: extraction from a model's response, number normalisation, correctness.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace drafteu::eval {

// The final-answer text of a response: the last \boxed{...}, else what follows the last "####"
// (to the end of its line), else the last number in the text. nullopt when there is none.
std::optional<std::string> extract_final_answer(std::string_view response);

// A number from answer text: strips $, %, commas, spaces, \text{...}/\mathrm{...} wrappers,
// \$ and \%, LaTeX \frac{a}{b} and "a/b" (as a/b), a trailing ".0" and units around the number
// ("12 apples", "$5.50 each"). nullopt when no number is there.
std::optional<double> parse_number(std::string_view text);

// The reference answer of a GSM8K "answer" field (the number after "####").
std::optional<double> reference_answer(std::string_view gsm8k_answer);

// Whether the response's final answer equals the reference number (to 1e-6, or 1e-9 relative
// for large values).
bool numbers_equal(double a, double b);
bool is_correct(std::string_view response, double reference);

}  // namespace drafteu::eval
