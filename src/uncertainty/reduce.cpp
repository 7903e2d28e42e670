#include "uncertainty/reduce.h"

#include <algorithm>
#include <sstream>

#include "util/error.h"

namespace drafteu::uncertainty {

torch::Tensor to_log_probs(const torch::Tensor& logits, int64_t dim) {
  detail::check_log_probs("to_log_probs", "logits", logits, 1);
  const auto type = logits.scalar_type();
  if (type == torch::kHalf || type == torch::kBFloat16) {
    return torch::log_softmax(logits, dim, torch::kFloat32);
  }
  return torch::log_softmax(logits, dim);
}

namespace detail {

std::string shape_str(c10::IntArrayRef shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

void check_log_probs(const char* fn, const char* what, const torch::Tensor& t, int64_t min_dim) {
  if (!t.defined()) fail(fn, ": ", what, " is not given (undefined tensor)");
  if (!torch::isFloatingType(t.scalar_type())) {
    fail(fn, ": ", what, " must be floating-point log-probabilities, got dtype ",
         c10::toString(t.scalar_type()));
  }
  if (t.dim() < min_dim) {
    fail(fn, ": ", what, " must have at least ", min_dim, " dimension", min_dim == 1 ? "" : "s",
         " (", min_dim == 1 ? "[..., V]" : "[K, ..., V]", "), got shape ", shape_str(t.sizes()));
  }
  if (t.size(-1) == 0) fail(fn, ": ", what, " has an empty vocabulary (last dimension is 0)");
}

void check_family(const char* fn, const char* what, const torch::Tensor& family) {
  check_log_probs(fn, what, family, 2);
  if (family.size(0) == 0) fail(fn, ": ", what, " has no members (dimension 0 is 0)");
}

void check_compatible(const char* fn, const char* a_name, const torch::Tensor& a,
                      c10::IntArrayRef a_positions, const char* b_name, const torch::Tensor& b,
                      c10::IntArrayRef b_positions) {
  const bool a_family = a.dim() == static_cast<int64_t>(a_positions.size()) + 2;
  const bool b_family = b.dim() == static_cast<int64_t>(b_positions.size()) + 2;
  const char* a_has = a_family ? " have " : " has ";
  const char* b_has = b_family ? " have " : " has ";
  if (a.size(-1) != b.size(-1)) {
    fail(fn, ": ", a_name, a_has, "vocab ", a.size(-1), " but ", b_name, b_has, b.size(-1));
  }
  if (a_positions != b_positions) {
    fail(fn, ": ", a_name, a_has, "positions ", shape_str(a_positions), " but ", b_name, b_has,
         shape_str(b_positions), " (full shapes ", shape_str(a.sizes()), " and ",
         shape_str(b.sizes()), ")");
  }
  if (a.device() != b.device()) {
    fail(fn, ": ", a_name, a_family ? " are on " : " is on ", a.device(), " but ", b_name,
         b_family ? " are on " : " is on ", b.device());
  }
}

void check_options(const char* fn, const ReduceOptions& options) {
  if (options.chunk_positions < 0) {
    fail(fn, ": chunk_positions must be >= 0 (0 = automatic), got ", options.chunk_positions);
  }
  if (options.max_chunk_elements < 1) {
    fail(fn, ": max_chunk_elements must be >= 1, got ", options.max_chunk_elements);
  }
  if (!torch::isFloatingType(options.accumulate)) {
    fail(fn, ": the accumulation dtype must be floating-point, got ",
         c10::toString(options.accumulate));
  }
}

std::vector<int64_t> family_positions(const torch::Tensor& family) {
  auto s = family.sizes();
  return std::vector<int64_t>(s.begin() + 1, s.end() - 1);
}

std::vector<int64_t> dist_positions(const torch::Tensor& dist) {
  auto s = dist.sizes();
  return std::vector<int64_t>(s.begin(), s.end() - 1);
}

ChunkDist::ChunkDist(torch::Tensor logp_)
    : logp(std::move(logp_)), prob(logp.exp()), zero(prob.eq(0)) {}

std::vector<torch::Tensor> reduce_in_chunks(const std::vector<torch::Tensor>& inputs,
                                            const std::vector<bool>& is_family,
                                            c10::IntArrayRef positions,
                                            const ReduceOptions& options, const ChunkFn& fn) {
  // Evaluation quantities: no autograd graph (in-place kernels; gradients at exact zeros would
  // be NaN anyway).
  torch::NoGradGuard no_grad;
  int64_t n = 1;
  for (int64_t s : positions) n *= s;

  // Flatten the position dimensions so that positions sit at dim -2 of every input.
  std::vector<torch::Tensor> flat(inputs.size());
  int64_t rows = 0;
  int64_t vocab = 1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& in = inputs[i];
    if (!in.defined()) continue;
    vocab = in.size(-1);
    flat[i] = is_family[i] ? in.reshape({in.size(0), n, vocab}) : in.reshape({n, vocab});
    rows += is_family[i] ? in.size(0) : 1;
  }
  int64_t chunk = options.chunk_positions;
  if (chunk == 0)
    chunk = std::max<int64_t>(1, options.max_chunk_elements / std::max<int64_t>(1, rows * vocab));
  chunk = std::min(chunk, std::max<int64_t>(n, 1));

  std::vector<torch::Tensor> out;
  int64_t start = 0;
  do {  // at least once, so an empty position shape still yields (empty) results
    const int64_t len = std::min(chunk, n - start);
    std::vector<torch::Tensor> chunks(flat.size());
    for (size_t i = 0; i < flat.size(); ++i) {
      if (!flat[i].defined()) continue;
      auto c = flat[i].narrow(-2, start, len).to(options.accumulate);
      if (options.from_logits) c = torch::log_softmax(c, -1);
      chunks[i] = std::move(c);
    }
    auto results = fn(chunks);
    if (out.empty()) out.resize(results.size());
    for (size_t j = 0; j < results.size(); ++j) {
      const auto& r = results[j];
      if (!r.defined()) continue;
      if (!out[j].defined()) {
        std::vector<int64_t> shape{n};
        shape.insert(shape.end(), r.sizes().begin() + 1, r.sizes().end());
        out[j] = torch::empty(shape, r.options());
      }
      out[j].narrow(0, start, len).copy_(r);
    }
    start += len;
  } while (start < n);

  for (auto& o : out) {
    if (!o.defined()) continue;
    std::vector<int64_t> shape(positions.begin(), positions.end());
    shape.insert(shape.end(), o.sizes().begin() + 1, o.sizes().end());
    o = o.view(shape);
  }
  return out;
}

}  // namespace detail
}  // namespace drafteu::uncertainty
