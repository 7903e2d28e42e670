#include "model/fast_forward.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>

#include <atomic>
#include <cmath>
#include <span>
#include <vector>

#include "model/kernels.h"
#include "model/llama.h"
#include "model/thread_pool.h"
#include "util/error.h"

namespace drafteu {

namespace {

// Rows the matrix-vector kernel takes at once (the weights are streamed once per block).
constexpr int64_t kVectorRows = 8;
// Multiply-adds from which many-row projections go to a GEMM (kernels::matmul_rows or BLAS):
// below it the matrix-vector kernel is faster (packing the inputs dominates small products).
constexpr int64_t kGemmWork = int64_t{1} << 22;
// Multiply-adds below which a step runs on the calling thread alone, and the least work of one
// chunk when it is split: handing a chunk to a polling worker costs about a microsecond, a few
// times what stories260K's products take (it never splits; a 15M model splits every product).
constexpr int64_t kParallelWork = int64_t{1} << 15;
// Chunks per thread: more than one, so that a worker that starts late (woken from sleep, or
// descheduled on a shared machine) leaves its share to the others instead of holding them up.
constexpr int64_t kChunksPerThread = 4;
// Multiply-adds per chunk of large steps (prefill): about 50 µs of work, so that a worker the OS
// deschedules while it holds a chunk holds the others up little.
constexpr int64_t kLargeChunkWork = int64_t{1} << 21;

// Chunks for a step of `work` multiply-adds on `threads` threads (below 2: run it unsplit).
int64_t chunk_count(int64_t work, int threads) {
  if (threads < 2) return 1;
  return std::min(work / kParallelWork,
                  std::max(threads * kChunksPerThread, work / kLargeChunkWork));
}

// Every delta attached to `l` has a raw form the fast path can add.
bool raw_deltas(const LinearImpl& l) {
  for (const auto& d : l.deltas())
    if (!d->adds_raw()) return false;
  return true;
}

// One product y [rows, out] = x [rows, in] · wᵀ of a step that runs several (q, k and v share
// their input, as do gate and up).
struct Product {
  const torch::Tensor* weight;  // a linear's, or the embedding for a tied lm_head
  float* y;
  const LinearImpl* linear = nullptr;  // its deltas, if any
  const torch::Tensor& w() const { return *weight; }
};
Product product(const LinearImpl& l, float* y) {
  return {&l.weight, y, &l};
}

// Runs the products of one step, splitting their output features over the forward's threads.
void project_weights(std::span<const Product> products, const float* x, int64_t rows, int threads) {
  const int64_t in = products[0].w().size(1);
  int64_t out = 0;
  for (const auto& p : products) out += p.w().size(0);
  const int64_t work = out * in * rows;
  const bool many = rows > kVectorRows && work >= kGemmWork;
  // One thread: OpenBLAS's packed GEMM is a little faster than kernels::matmul_rows on the 110M
  // shape (240 against 256 ms of CPU for a 128-token prefill). Two or more: matmul_rows split
  // over the workers scales where OpenBLAS's OpenMP threads barely do on products this small
  // (15M prefill: 5.1k tok/s at one thread, 5.4k at two).
  if (many && (threads < 2 || !kernels::has_matmul())) {
    rest_forward_threads();  // OpenBLAS brings its own threads
    auto xt = torch::from_blob(const_cast<float*>(x), {rows, in});
    for (const auto& p : products) {
      auto yt = torch::from_blob(p.y, {rows, p.w().size(0)});
      at::mm_out(yt, xt, p.w().t());
    }
    return;
  }
  thread_local std::vector<float> pack_buffer;  // the caller's; workers read it through xp
  const float* xp = nullptr;
  if (many) {
    pack_buffer.resize(static_cast<size_t>(kernels::packed_size(rows, in)));
    kernels::pack_rows(x, in, rows, in, pack_buffer.data());
    xp = pack_buffer.data();
  }
  // Output features [begin, end) of one product.
  auto run = [&](const Product& p, int64_t begin, int64_t end) {
    const int64_t n = p.w().size(0);
    const float* wp = p.w().data_ptr<float>();
    if (many) return kernels::matmul_rows(wp, in, begin, end, xp, rows, p.y, n);
    for (int64_t r = 0; r < rows; r += kVectorRows)
      kernels::matvec_rows(wp, in, begin, end, x + r * in, in, std::min(kVectorRows, rows - r),
                           p.y + r * n, n);
  };
  const int64_t chunks = chunk_count(work, threads);
  if (chunks < 2) {
    for (const auto& p : products) run(p, 0, p.w().size(0));
    return;
  }
  // Chunks of `step` features, whole 4-row groups from each product's first feature: the kernels
  // sum a feature the same way whichever chunk holds it, so the result does not depend on the
  // thread count. first[j]: product j's first chunk.
  const int64_t step = (out / chunks + 3) / 4 * 4;
  int64_t first[4] = {0};
  if (products.size() > 3) fail("fast_forward: more than three products in one step");
  for (size_t j = 0; j < products.size(); ++j)
    first[j + 1] = first[j] + (products[j].w().size(0) + step - 1) / step;
  parallel_chunks(first[products.size()], [&](int64_t c) {
    size_t j = 0;
    while (c >= first[j + 1]) ++j;
    const int64_t b = (c - first[j]) * step;
    run(products[j], b, std::min(products[j].w().size(0), b + step));
  });
}

// The base weights once for all rows, then each attached delta's term.
void project_step(std::span<const Product> products, const float* x, int64_t rows, int threads) {
  project_weights(products, x, rows, threads);
  for (const auto& p : products)
    if (p.linear)
      for (const auto& d : p.linear->deltas()) d->add_raw(x, rows, p.y);
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

  // Inside another parallel region (a caller's own parallel_for) the forward stays on its thread.
  ForwardThreads threads(at::in_parallel_region() ? 1 : at::get_num_threads());
  const int nt = threads.threads();
  // Runs fn(begin, end) over [0, tasks) in chunks, `cost` multiply-adds per task.
  auto split = [&](int64_t tasks, int64_t cost, auto&& fn) {
    const int64_t chunks = std::min(tasks, chunk_count(tasks * cost, nt));
    if (chunks < 2) return fn(int64_t{0}, tasks);
    parallel_chunks(chunks, [&](int64_t i) { fn(i * tasks / chunks, (i + 1) * tasks / chunks); });
  };

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
    const Product qkv[] = {product(*A.q_proj, q), product(*A.k_proj, k), product(*A.v_proj, v)};
    project_step(qkv, xn, rows, nt);
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
    // Attention over (member, sequence, token) rows × heads: causal over the sequence's real
    // keys, which every member shares. Tasks [begin, end) of rows·H, row-major.
    auto attend_tasks = [&](int64_t begin, int64_t end) {
      thread_local std::vector<float> scores;
      thread_local std::vector<uint8_t> allowed;
      scores.resize(static_cast<size_t>(S));
      allowed.resize(static_cast<size_t>(S));
      for (int64_t task = begin; task < end; ++task) {
        const int64_t r = task / H, h = task % H;
        const int64_t n = r / T, j = r % T, b = (r % R) / T;
        if (task == begin || h == 0)
          for (int64_t s = 0; s < S; ++s)
            allowed[static_cast<size_t>(s)] = keys[static_cast<size_t>(b * S + s)] && s <= past + j;
        const int64_t g = h / groups, base = (n * Hkv + g) * cap * hd;
        kernels::attend(q + (r * H + h) * hd, Kc + base, Vc + base, allowed.data(), S, hd, scale,
                        scores.data(), att + (r * H + h) * hd);
      }
    };
    split(rows * H, S * hd, attend_tasks);
    const Product o = product(*A.o_proj, xn);
    project_step({&o, 1}, att, rows, nt);
    add_into(x, xn, rows * D);

    const auto& M = *layer.mlp;
    norm_rows(layer.post_attention_layernorm->weight.data_ptr<float>());
    const Product gate_up[] = {product(*M.gate_proj, gate), product(*M.up_proj, up)};
    project_step(gate_up, xn, rows, nt);
    split(rows, F * 8, [&](int64_t begin, int64_t end) {  // exp: about 8 multiply-adds' time
      kernels::silu_mul(gate + begin * F, up + begin * F, (end - begin) * F);
    });
    const Product down = product(*M.down_proj, xn);
    project_step({&down, 1}, gate, rows, nt);
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
  const Product head = model.lm_head ? product(*model.lm_head, logits.data_ptr<float>())
                                     : Product{&embed, logits.data_ptr<float>()};
  project_step({&head, 1}, xn, N * Tout, nt);
  return logits;
}

}  // namespace drafteu
