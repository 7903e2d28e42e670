// Rotary position embeddings in Hugging Face's half-split layout (rotate_half), with the
// llama3 frequency scaling of Llama 3.1+.
#pragma once
#include <torch/torch.h>

#include "model/config.h"

namespace drafteu {

// inv_freq [head_dim / 2], float32, computed exactly as transformers does.
torch::Tensor rope_inverse_frequencies(const LlamaConfig& config);

// cos, sin of shape [B, T, head_dim] for integer positions [B, T].
std::pair<torch::Tensor, torch::Tensor> rope_cos_sin(const torch::Tensor& inv_freq,
                                                     const torch::Tensor& positions,
                                                     torch::ScalarType dtype);

// x: [B, H, T, head_dim]; cos/sin: [B, T, head_dim].
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos,
                         const torch::Tensor& sin);

}  // namespace drafteu
