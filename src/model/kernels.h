// Raw-pointer float32 kernels for the fast decode path (model/fast_forward): matrix-vector
// products that stream a weight matrix once for a few input rows, RMSNorm, RoPE, SwiGLU and
// one query row of attention. AVX2+FMA versions are chosen at run time where the CPU has them;
// portable loops otherwise. No libtorch here: these are called with pointers into its tensors.
#pragma once
#include <cstdint>

namespace drafteu::kernels {

// y[r, i] = dot(w[i, :], x[r, :]) for output rows i in [row_begin, row_end) and r < rows.
// w: [out, in] row-major (Hugging Face's layout); x: rows × in, stride x_stride; y: rows × out,
// stride y_stride.
void matvec_rows(const float* w, int64_t in, int64_t row_begin, int64_t row_end, const float* x,
                 int64_t x_stride, int64_t rows, float* y, int64_t y_stride);

// The same product for many input rows (kernels_matmul): register-blocked for AVX-512, where it
// outpaces the matrix-vector kernel and, split over threads, OpenBLAS's threads on small
// products. Only where has_matmul(); elsewhere the caller uses BLAS. The input rows are packed
// first (pack_rows, packed_size floats), once for every product and thread that reads them.
bool has_matmul();
int64_t packed_size(int64_t rows, int64_t in);
void pack_rows(const float* x, int64_t x_stride, int64_t rows, int64_t in, float* packed);
void matmul_rows(const float* w, int64_t in, int64_t row_begin, int64_t row_end,
                 const float* packed, int64_t rows, float* y, int64_t y_stride);

float dot(const float* a, const float* b, int64_t n);
void axpy(float a, const float* x, float* y, int64_t n);  // y += a * x

// A low-rank term on `rows` input rows: y[row] += Σ_j (a_j · x[row]) bt_j, with a [r, in] and
// bt [r, out] row-major (bt = (scale·B)ᵀ, so both factors are read as contiguous rows).
void low_rank_add(const float* a, const float* bt, int64_t r, int64_t in, int64_t out,
                  const float* x, int64_t rows, float* y);

// out = weight * x / sqrt(mean(x^2) + eps), in float as transformers computes it.
void rms_norm(const float* x, const float* weight, float eps, int64_t n, float* out);

// cos/sin of pos * inv_freq[i] for i < head_dim / 2 (one table serves every head of a token).
void rope_table(const float* inv_freq, int64_t head_dim, int64_t pos, float* cos, float* sin);
// Half-split rotary embedding of one head vector in place.
void rope_rotate(float* x, const float* cos, const float* sin, int64_t head_dim);

// gate[i] = silu(gate[i]) * up[i].
void silu_mul(float* gate, const float* up, int64_t n);

// One query head against keys/values [s, head_dim] (row stride head_dim): softmax(q·k * scale)
// over the allowed keys, weighted sum of values into out[head_dim]. `allowed` marks keys to
// attend (null = all); with none allowed every key counts equally, as an all-masked row does in
// the reference path. scratch holds s floats.
void attend(const float* q, const float* k, const float* v, const uint8_t* allowed, int64_t s,
            int64_t head_dim, float scale, float* scratch, float* out);

bool uses_avx2();  // which variant runs here (doctor, benchmarks)

}  // namespace drafteu::kernels
