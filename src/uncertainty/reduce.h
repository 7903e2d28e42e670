// Shared conventions of the uncertainty module: options for the chunked reductions, the logits
// helper, and (in namespace detail) the validation and chunk driver every quantity uses.
//
// Conventions (all of src/uncertainty/):
//  * Inputs are natural-log probabilities over the last dimension (the vocabulary, size V).
//    A family of members (target posterior samples p_m or drafts q_k) is stacked on dim 0:
//    [K, ..., V]; a single distribution (a reference) is [..., V]; "..." is any position shape,
//    e.g. [T] or [B, T]. Results have the position shape [...].
//  * Raw logits: either call to_log_probs() first, or pass ReduceOptions{.from_logits = true} so
//    log_softmax is applied per chunk in the accumulation dtype (no normalised copy of the whole
//    input). log_softmax is idempotent on log-probabilities, so from_logits may be set even when
//    only some of the inputs are logits.
//  * Zeros: a probability that is exactly 0 (logp = -inf, or exp(logp) underflowing to 0)
//    contributes 0 * log 0 = 0, never NaN. KL(p || q) with p > 0 where q = 0 is +inf.
//  * Precision: each chunk is converted to ReduceOptions::accumulate (float64 by default) before
//    any arithmetic, so float32 / bfloat16 inputs are reduced in float64; scalar results have the
//    accumulation dtype and the device of the inputs.
//  * The results carry no autograd graph (they are evaluation quantities); training losses
//    should use their own differentiable formulation.
//  * Memory: positions are processed in chunks, so the extra memory is a few buffers of
//    [rows, chunk, V] (rows = total members of all inputs for one position), each at most
//    max_chunk_elements elements (peak about 4 x 8 B x max_chunk_elements in float64). A family
//    whose middle dimensions cannot be flattened as a view (a non-contiguous permutation) is
//    copied once in its own dtype.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace drafteu::uncertainty {

struct ReduceOptions {
  // Positions per chunk; 0 = as many as fit in max_chunk_elements.
  int64_t chunk_positions = 0;
  // Bound on the elements of one converted chunk buffer, rows * chunk * V.
  int64_t max_chunk_elements = int64_t{1} << 22;
  // Dtype the chunks are converted to and the results are returned in.
  torch::ScalarType accumulate = torch::kFloat64;
  // Inputs are raw logits: apply log_softmax over the vocabulary to each chunk.
  bool from_logits = false;
};

// log_softmax over `dim`; half and bfloat16 logits are normalised in float32, float32 and float64
// keep their dtype. Materialises a tensor the size of `logits` (see ReduceOptions::from_logits
// for the chunked alternative).
torch::Tensor to_log_probs(const torch::Tensor& logits, int64_t dim = -1);

namespace detail {

// "[2, 3, 5]"
std::string shape_str(c10::IntArrayRef shape);

// Throws drafteu::Error unless `t` is a defined floating-point tensor with at least `min_dim`
// dimensions and a non-empty last dimension. `fn` and `what` name the caller and the argument.
void check_log_probs(const char* fn, const char* what, const torch::Tensor& t, int64_t min_dim);
// A family [K, ..., V] (K >= 1).
void check_family(const char* fn, const char* what, const torch::Tensor& family);
// Same vocabulary, same position shape and same device; `a_positions` / `b_positions` are the
// position shapes ([...]) of the two arguments.
void check_compatible(const char* fn, const char* a_name, const torch::Tensor& a,
                      c10::IntArrayRef a_positions, const char* b_name, const torch::Tensor& b,
                      c10::IntArrayRef b_positions);
void check_options(const char* fn, const ReduceOptions& options);

// Position shape of a family [K, ..., V] -> [...], and of a distribution [..., V] -> [...].
std::vector<int64_t> family_positions(const torch::Tensor& family);
std::vector<int64_t> dist_positions(const torch::Tensor& dist);

// A distribution chunk in the accumulation dtype with its probabilities and the mask of exact
// zeros (exp underflow included), so several reductions can share them.
struct ChunkDist {
  explicit ChunkDist(torch::Tensor logp);
  torch::Tensor logp;  // [..., V]
  torch::Tensor prob;  // exp(logp)
  torch::Tensor zero;  // prob == 0 (bool)
};

// Runs `fn` over chunks of positions. Each input is a family [K, ..., V] or a distribution
// [..., V] (undefined = absent, passed on as undefined) and all share the position shape
// `positions`. `fn` receives the chunks, flattened to [K, n, V] / [n, V] and converted to the
// accumulation dtype (log_softmax applied when options.from_logits), and returns per-chunk results
// shaped [n, rest...] (undefined = not computed). Returns each result assembled to
// [positions..., rest...]; a result `fn` never computes stays undefined.
using ChunkFn = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;
std::vector<torch::Tensor> reduce_in_chunks(const std::vector<torch::Tensor>& inputs,
                                            const std::vector<bool>& is_family,
                                            c10::IntArrayRef positions,
                                            const ReduceOptions& options, const ChunkFn& fn);

}  // namespace detail
}  // namespace drafteu::uncertainty
