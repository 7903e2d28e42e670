#include "model/kernels.h"

#include <immintrin.h>

#include <cmath>
#include <limits>

namespace drafteu::kernels {

namespace {

bool cpu_has_avx2_fma() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

// ---- portable versions ----

float dot_plain(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void matvec_plain(const float* w, int64_t in, int64_t r0, int64_t r1, const float* x, int64_t xs,
                  int64_t rows, float* y, int64_t ys) {
  for (int64_t i = r0; i < r1; ++i)
    for (int64_t r = 0; r < rows; ++r) y[r * ys + i] = dot_plain(w + i * in, x + r * xs, in);
}

// ---- AVX2 + FMA versions ----

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  if (i + 8 <= n) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    i += 8;
  }
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Four weight rows against one input row: eight independent FMA chains hide FMA latency, and
// the input vector is loaded once for four rows.
__attribute__((target("avx2,fma"))) void dot4_avx2(const float* w, int64_t in, const float* x,
                                                   float* out4) {
  const float *w0 = w, *w1 = w + in, *w2 = w + 2 * in, *w3 = w + 3 * in;
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
         a3 = _mm256_setzero_ps(), b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps(),
         b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= in; k += 16) {
    const __m256 xa = _mm256_loadu_ps(x + k), xb = _mm256_loadu_ps(x + k + 8);
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + k), xa, a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + k), xa, a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + k), xa, a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + k), xa, a3);
    b0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + k + 8), xb, b0);
    b1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + k + 8), xb, b1);
    b2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + k + 8), xb, b2);
    b3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + k + 8), xb, b3);
  }
  if (k + 8 <= in) {
    const __m256 xa = _mm256_loadu_ps(x + k);
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + k), xa, a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + k), xa, a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + k), xa, a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + k), xa, a3);
    k += 8;
  }
  out4[0] = hsum(_mm256_add_ps(a0, b0));
  out4[1] = hsum(_mm256_add_ps(a1, b1));
  out4[2] = hsum(_mm256_add_ps(a2, b2));
  out4[3] = hsum(_mm256_add_ps(a3, b3));
  for (; k < in; ++k) {
    out4[0] += w0[k] * x[k];
    out4[1] += w1[k] * x[k];
    out4[2] += w2[k] * x[k];
    out4[3] += w3[k] * x[k];
  }
}

__attribute__((target("avx2,fma"))) void matvec_avx2(const float* w, int64_t in, int64_t r0,
                                                     int64_t r1, const float* x, int64_t xs,
                                                     int64_t rows, float* y, int64_t ys) {
  int64_t i = r0;
  float out4[4];
  // Four weight rows stay in L1 while every input row passes over them: W is streamed once.
  for (; i + 4 <= r1; i += 4)
    for (int64_t r = 0; r < rows; ++r) {
      dot4_avx2(w + i * in, in, x + r * xs, out4);
      for (int j = 0; j < 4; ++j) y[r * ys + i + j] = out4[j];
    }
  for (; i < r1; ++i)
    for (int64_t r = 0; r < rows; ++r) y[r * ys + i] = dot_avx2(w + i * in, x + r * xs, in);
}

__attribute__((target("avx2,fma"))) void axpy_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

}  // namespace

bool uses_avx2() {
  return cpu_has_avx2_fma();
}

void matvec_rows(const float* w, int64_t in, int64_t row_begin, int64_t row_end, const float* x,
                 int64_t x_stride, int64_t rows, float* y, int64_t y_stride) {
  if (cpu_has_avx2_fma())
    matvec_avx2(w, in, row_begin, row_end, x, x_stride, rows, y, y_stride);
  else
    matvec_plain(w, in, row_begin, row_end, x, x_stride, rows, y, y_stride);
}

float dot(const float* a, const float* b, int64_t n) {
  return cpu_has_avx2_fma() ? dot_avx2(a, b, n) : dot_plain(a, b, n);
}

void axpy(float a, const float* x, float* y, int64_t n) {
  if (cpu_has_avx2_fma()) return axpy_avx2(a, x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void low_rank_add(const float* a, const float* bt, int64_t r, int64_t in, int64_t out,
                  const float* x, int64_t rows, float* y) {
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t j = 0; j < r; ++j)
      axpy(dot(a + j * in, x + row * in, in), bt + j * out, y + row * out, out);
}

void rms_norm(const float* x, const float* weight, float eps, int64_t n, float* out) {
  const float ms = dot(x, x, n) / static_cast<float>(n);
  const float r = 1.0f / std::sqrt(ms + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * r);
}

void rope_table(const float* inv_freq, int64_t head_dim, int64_t pos, float* cos, float* sin) {
  const float p = static_cast<float>(pos);
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const float f = p * inv_freq[i];  // float, as the module path computes it
    cos[i] = std::cos(f);
    sin[i] = std::sin(f);
  }
}

void rope_rotate(float* x, const float* cos, const float* sin, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] - b * sin[i];
    x[i + half] = b * cos[i] + a * sin[i];
  }
}

void silu_mul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void attend(const float* q, const float* k, const float* v, const uint8_t* allowed, int64_t s,
            int64_t head_dim, float scale, float* scratch, float* out) {
  bool any = false;
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < s; ++j) {
    if (allowed && !allowed[j]) continue;
    any = true;
    scratch[j] = dot(q, k + j * head_dim, head_dim) * scale;
    mx = std::max(mx, scratch[j]);
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < s; ++j) {
    const bool use = !any || !allowed || allowed[j];
    scratch[j] = use ? (any ? std::exp(scratch[j] - mx) : 1.0f) : 0.0f;
    sum += scratch[j];
  }
  const float inv = 1.0f / sum;
  for (int64_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
  for (int64_t j = 0; j < s; ++j)
    if (scratch[j] != 0.0f) axpy(scratch[j] * inv, v + j * head_dim, out, head_dim);
}

}  // namespace drafteu::kernels
