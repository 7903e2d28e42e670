#include "model/fast_forward.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>

#include <atomic>
#include <cmath>
#include <vector>

#include "model/kernels.h"
#include "model/llama.h"
#include "util/error.h"

namespace drafteu {

namespace {

// Rows the matrix-vector kernel takes at once (the weights are streamed once per block).
constexpr int64_t kVectorRows = 8;
// Multiply-adds from which many-row projections go to BLAS GEMM: below it the matrix-vector
// kernel is faster (a GEMM call's packing and thread start-up dominate small products).
constexpr int64_t kGemmWork = int64_t{1} << 22;
// Multiply-adds below which a kernel runs on the calling thread: waking a second thread costs
// more than it saves on smaller work (stories260K never splits; a 15M model splits its lm_head).
constexpr int64_t kParallelWork = int64_t{1} << 18;

// Every delta attached to `l` has a raw form the fast path can add.
bool raw_deltas(const LinearImpl& l) {
  for (const auto& d : l.deltas())
    if (!d->adds_raw()) return false;
  return true;
}

// y [rows, out] = x [rows, in] · wᵀ.
void project(const torch::Tensor& w, const float* x, int64_t rows, float* y) {
  const int64_t out = w.size(0), in = w.size(1), work = out * in * rows;
  if (rows > kVectorRows && work >= kGemmWork) {
    auto xt = torch::from_blob(const_cast<float*>(x), {rows, in});
    auto yt = torch::from_blob(y, {rows, out});
    at::mm_out(yt, xt, w.t());
    return;
  }
  const float* wp = w.data_ptr<float>();
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t r = 0; r < rows; r += kVectorRows)
      kernels::matvec_rows(wp, in, begin, end, x + r * in, in, std::min(kVectorRows, rows - r),
                           y + r * out, out);
  };
  if (work < kParallelWork || at::get_num_threads() < 2)
    run(0, out);
  else
    at::parallel_for(0, out, 64, run);
}

// The base weight once for all rows, then each attached delta's term.
void project(const LinearImpl& l, const float* x, int64_t rows, float* y) {
  project(l.weight, x, rows, y);
  for (const auto& d : l.deltas()) d->add_raw(x, rows, y);
}

std::atomic<bool> g_enabled{true};
std::atomic<int64_t> g_calls{0};

void add_into(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace

void set_fast_forward_enabled(bool on) {
  g_enabled = on;
}
bool fast_forward_enabled() {
  return g_enabled;
}
int64_t fast_forward_calls() {
  return g_calls;
}

std::string fast_forward_refusal(const LlamaForCausalLMImpl& model, const torch::Tensor& ids,
                                 const KVCache* cache, const torch::Tensor& attention_mask,
                                 const Expansion& expansion) {
  const auto& norm = model.backbone->norm->weight;
  if (torch::GradMode::is_enabled() && norm.requires_grad()) return "gradients are needed";
  if (at::autocast::is_cpu_enabled()) return "autocast is on";
  if (norm.scalar_type() != torch::kFloat32 || !norm.device().is_cpu())
    return "the model is not float32 on the CPU";
  if (ids.dim() != 2 || !ids.device().is_cpu() || ids.numel() == 0 ||
      !(ids.scalar_type() == torch::kInt64 || ids.scalar_type() == torch::kInt32))
    return "ids are not a non-empty [batch, time] integer tensor on the CPU";
  const int64_t b = ids.size(0), t = ids.size(1), past = cache ? cache->length() : 0;
  const int64_t layers = model.config().num_hidden_layers;
  if (expansion.members < 1 || expansion.layer < 0 || expansion.layer > layers)
    return "the expansion is out of range";
  if (attention_mask.defined() &&
      (attention_mask.dim() != 2 || attention_mask.size(0) != b ||
       !attention_mask.device().is_cpu() ||
       (attention_mask.size(1) != t && attention_mask.size(1) != past + t)))
    return "the attention mask's shape is not one forward accepts";
  if (cache) {
    if (cache->num_layers() != layers) return "the cache has another number of layers";
    if (past > 0 && (!cache->key_mask().defined() || cache->key_mask().size(0) != b))
      return "the cache holds another batch";
    for (int64_t l = 0; l < cache->num_layers(); ++l) {
      const int64_t n = cache->layer_batch(l);
      if (n != -1 && n != (l >= expansion.layer ? expansion.members * b : b))
        return "the cache is expanded otherwise";
    }
  }
  if (model.lm_head && (!raw_deltas(*model.lm_head) || !model.lm_head->weight.is_contiguous()))
    return "lm_head has deltas without a raw form, or is not contiguous";
  for (const auto& layer : model.backbone->layer_list) {
    const auto& a = *layer->self_attn;
    const auto& m = *layer->mlp;
    for (const LinearImpl* l : {&*a.q_proj, &*a.k_proj, &*a.v_proj, &*a.o_proj, &*m.gate_proj,
                                &*m.up_proj, &*m.down_proj}) {
      if (!raw_deltas(*l)) return "a linear layer has deltas without a raw form (training LoRA)";
      if (!l->weight.is_contiguous()) return "a weight is not contiguous";
    }
  }
  return "";
}

torch::Tensor fast_forward(const LlamaForCausalLMImpl& model, const torch::Tensor& ids_in,
                           KVCache* cache, const torch::Tensor& attention_mask, bool last_only,
                           const Expansion& expansion) {
  ++g_calls;
  const auto& c = model.config();
  const int64_t B = ids_in.size(0), T = ids_in.size(1), R = B * T;
  const int64_t D = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const int64_t H = c.num_attention_heads, Hkv = c.num_key_value_heads, hd = c.head_dim;
  const int64_t groups = H / Hkv, K = expansion.members;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));

  KVCache scratch_cache(c.num_hidden_layers, T);
  KVCache& kv = cache ? *cache : scratch_cache;
  const int64_t past = kv.length(), S = past + T;

  // Key mask over all positions [B, S] and each new token's rotary position: the count of real
  // tokens up to it, minus one (left padding starts at 0, like the module path).
  auto ids = ids_in.to(torch::kInt64).contiguous();
  torch::Tensor new_mask =
      attention_mask.defined()
          ? attention_mask.narrow(1, attention_mask.size(1) - T, T).to(torch::kBool).contiguous()
          : torch::ones({B, T}, torch::kBool);
  std::vector<uint8_t> keys(static_cast<size_t>(B * S));
  std::vector<int64_t> pos(static_cast<size_t>(R));
  {
    torch::Tensor old;
    if (past > 0) old = kv.key_mask().contiguous();
    const bool* om = past > 0 ? old.data_ptr<bool>() : nullptr;
    const bool* nm = new_mask.data_ptr<bool>();
    for (int64_t b = 0; b < B; ++b) {
      uint8_t* row = keys.data() + b * S;
      int64_t count = 0;
      for (int64_t j = 0; j < past; ++j) count += (row[j] = om[b * past + j] ? 1 : 0);
      for (int64_t j = 0; j < T; ++j) {
        count += (row[past + j] = nm[b * T + j] ? 1 : 0);
        pos[static_cast<size_t>(b * T + j)] = std::max<int64_t>(0, count - 1);
      }
    }
  }

  // Activations, one row per (member, sequence, new token); R rows before the expansion, K·R
  // after it (row k·R + r is member k's copy of row r).
  const int64_t KR = K * R;
  thread_local std::vector<float> work;
  const int64_t need = KR * (2 * D + 2 * H * hd + 2 * Hkv * hd + 2 * F);
  if (static_cast<int64_t>(work.size()) < need) work.resize(static_cast<size_t>(need));
  float* x = work.data();
  float* xn = x + KR * D;
  float* q = xn + KR * D;
  float* att = q + KR * H * hd;
  float* k = att + KR * H * hd;
  float* v = k + KR * Hkv * hd;
  float* gate = v + KR * Hkv * hd;
  float* up = gate + KR * F;
  int64_t rows = R;
  auto expand = [&] {
    for (int64_t m = 1; m < K; ++m) std::copy(x, x + R * D, x + m * R * D);
    rows = KR;
  };

  const auto& embed = model.backbone->embed_tokens->weight;
  const float* E = embed.data_ptr<float>();
  const int64_t* id = ids.data_ptr<int64_t>();
  for (int64_t r = 0; r < R; ++r) {
    if (id[r] < 0 || id[r] >= V)
      fail("forward: token id ", id[r], " is outside the vocabulary (", V, ")");
    std::copy(E + id[r] * D, E + (id[r] + 1) * D, x + r * D);
  }
  // Rotary cos | sin per row, shared by every layer, head and member.
  std::vector<float> rope(static_cast<size_t>(R * hd));
  const float* inv_freq = model.inv_freq().data_ptr<float>();
  for (int64_t r = 0; r < R; ++r)
    kernels::rope_table(inv_freq, hd, pos[static_cast<size_t>(r)], rope.data() + r * hd,
                        rope.data() + r * hd + hd / 2);
  auto norm_rows = [&](const float* w) {
    for (int64_t r = 0; r < rows; ++r) kernels::rms_norm(x + r * D, w, eps, D, xn + r * D);
  };

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (l == expansion.layer && K > 1) expand();
    const auto& layer = *model.backbone->layer_list[static_cast<size_t>(l)];
    const auto& A = *layer.self_attn;
    norm_rows(layer.input_layernorm->weight.data_ptr<float>());
    project(*A.q_proj, xn, rows, q);
    project(*A.k_proj, xn, rows, k);
    project(*A.v_proj, xn, rows, v);
    // The cache holds one row per (member, sequence): rows / T of them, member-major.
    auto [kbuf, vbuf] = kv.reserve(l, rows / T, Hkv, T, hd, embed.options());
    const int64_t cap = kbuf.size(2);
    float* Kc = kbuf.data_ptr<float>();
    float* Vc = vbuf.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = r / T, j = r % T;
      const float* cs = rope.data() + (r % R) * hd;
      for (int64_t h = 0; h < H; ++h)
        kernels::rope_rotate(q + (r * H + h) * hd, cs, cs + hd / 2, hd);
      for (int64_t g = 0; g < Hkv; ++g) {
        float* kr = k + (r * Hkv + g) * hd;
        kernels::rope_rotate(kr, cs, cs + hd / 2, hd);
        const int64_t at = ((n * Hkv + g) * cap + past + j) * hd;
        std::copy(kr, kr + hd, Kc + at);
        std::copy(v + (r * Hkv + g) * hd, v + (r * Hkv + g + 1) * hd, Vc + at);
      }
    }
    // Attention, one (member, sequence, token) row per task: causal over the sequence's real
    // keys, which every member shares.
    auto attend_rows = [&](int64_t begin, int64_t end) {
      std::vector<float> scores(static_cast<size_t>(S));
      std::vector<uint8_t> allowed(static_cast<size_t>(S));
      for (int64_t r = begin; r < end; ++r) {
        const int64_t n = r / T, j = r % T, b = (r % R) / T;
        for (int64_t s = 0; s < S; ++s)
          allowed[static_cast<size_t>(s)] = keys[static_cast<size_t>(b * S + s)] && s <= past + j;
        for (int64_t h = 0; h < H; ++h) {
          const int64_t g = h / groups, base = (n * Hkv + g) * cap * hd;
          kernels::attend(q + (r * H + h) * hd, Kc + base, Vc + base, allowed.data(), S, hd, scale,
                          scores.data(), att + (r * H + h) * hd);
        }
      }
    };
    if (rows * S * H * hd < kParallelWork || rows < 2)
      attend_rows(0, rows);
    else
      at::parallel_for(0, rows, 1, attend_rows);
    project(*A.o_proj, att, rows, xn);
    add_into(x, xn, rows * D);

    const auto& M = *layer.mlp;
    norm_rows(layer.post_attention_layernorm->weight.data_ptr<float>());
    project(*M.gate_proj, xn, rows, gate);
    project(*M.up_proj, xn, rows, up);
    kernels::silu_mul(gate, up, rows * F);
    project(*M.down_proj, gate, rows, xn);
    add_into(x, xn, rows * D);
  }
  if (cache) cache->commit(new_mask);
  if (rows < KR) expand();  // only lm_head is perturbed

  // Final norm and lm_head over the rows asked for.
  const int64_t N = rows / T, Tout = last_only ? 1 : T;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < Tout; ++j) {
      const int64_t src = n * T + (last_only ? T - 1 : j);
      kernels::rms_norm(x + src * D, model.backbone->norm->weight.data_ptr<float>(), eps, D,
                        xn + (n * Tout + j) * D);
    }
  auto logits = torch::empty({N, Tout, V}, torch::kFloat32);
  if (model.lm_head)
    project(*model.lm_head, xn, N * Tout, logits.data_ptr<float>());
  else
    project(embed, xn, N * Tout, logits.data_ptr<float>());
  return logits;
}

}  // namespace drafteu
