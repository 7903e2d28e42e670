// Many-row products (prefill, wide batches) on AVX-512 CPUs: y = x · wᵀ with w in Hugging Face's
// [out, in] layout, as dot products blocked 4 weight rows × 4 input rows. Sixteen accumulators
// make each loaded vector serve four FMAs, so the FMA units, not the loads, set the pace (the
// matrix-vector kernel loads one weight vector per FMA); no packed copy of w is needed.
#include <immintrin.h>

#include <algorithm>

#include "model/kernels.h"

namespace drafteu::kernels {

namespace {

// GCC 12 warns that the plain unpack and extract intrinsics read an undefined vector; the masked
// forms with every lane set compute the same without one.
__attribute__((target("avx512f"))) inline __m512 unpacklo(__m512 a, __m512 b) {
  return _mm512_mask_unpacklo_ps(a, 0xffff, a, b);
}
__attribute__((target("avx512f"))) inline __m512 unpackhi(__m512 a, __m512 b) {
  return _mm512_mask_unpackhi_ps(a, 0xffff, a, b);
}
__attribute__((target("avx512f"))) inline __m512 unpacklo64(__m512 a, __m512 b) {
  const __m512d x = _mm512_castps_pd(a), y = _mm512_castps_pd(b);
  return _mm512_castpd_ps(_mm512_mask_unpacklo_pd(x, 0xff, x, y));
}
__attribute__((target("avx512f"))) inline __m512 unpackhi64(__m512 a, __m512 b) {
  const __m512d x = _mm512_castps_pd(a), y = _mm512_castps_pd(b);
  return _mm512_castpd_ps(_mm512_mask_unpackhi_pd(x, 0xff, x, y));
}

template <int Half>
__attribute__((target("avx512f"))) inline __m256 half256(__m512 a) {
  return _mm256_castpd_ps(
      _mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xf, _mm512_castps_pd(a), Half));
}

// Sums each of a0..a3 into one float: out[j] = Σ aj, by a transpose-and-add tree (11 shuffles
// and adds for four sums instead of about eight each).
__attribute__((target("avx512f"))) inline __m128 hsum4_512(__m512 a0, __m512 a1, __m512 a2,
                                                           __m512 a3) {
  const __m512 s01 = _mm512_add_ps(unpacklo(a0, a1), unpackhi(a0, a1));
  const __m512 s23 = _mm512_add_ps(unpacklo(a2, a3), unpackhi(a2, a3));
  // Each 128-bit lane now holds partial sums of a0, a1, a2, a3 in order.
  const __m512 lanes = _mm512_add_ps(unpacklo64(s01, s23), unpackhi64(s01, s23));
  const __m256 half = _mm256_add_ps(half256<0>(lanes), half256<1>(lanes));
  return _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
}

__attribute__((target("avx512f"))) inline __m512 load(const float* p, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}
// Elements of a row from k on, at most 16 (the last step of a row shorter than 16 more).
inline __mmask16 step_mask(int64_t in, int64_t k) {
  return static_cast<__mmask16>(in - k >= 16 ? 0xffff : (1u << (in - k)) - 1);
}

// Four weight rows (w, stride in) against four input rows (x, stride xs): y[r, 0..3] for r < 4.
// Sixteen named accumulators (an array of them is kept in memory by GCC 12).
__attribute__((target("avx512f"))) void block4x4(const float* w, int64_t in, const float* x,
                                                 int64_t xs, float* y, int64_t ys) {
  const __m512 z = _mm512_setzero_ps();
  __m512 c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z;
  __m512 c20 = z, c21 = z, c22 = z, c23 = z, c30 = z, c31 = z, c32 = z, c33 = z;
  for (int64_t k = 0; k < in; k += 16) {
    const __mmask16 m = step_mask(in, k);
    const __m512 x0 = load(x + k, m), x1 = load(x + xs + k, m), x2 = load(x + 2 * xs + k, m),
                 x3 = load(x + 3 * xs + k, m);
    __m512 v = load(w + k, m);
    c00 = _mm512_fmadd_ps(v, x0, c00), c10 = _mm512_fmadd_ps(v, x1, c10);
    c20 = _mm512_fmadd_ps(v, x2, c20), c30 = _mm512_fmadd_ps(v, x3, c30);
    v = load(w + in + k, m);
    c01 = _mm512_fmadd_ps(v, x0, c01), c11 = _mm512_fmadd_ps(v, x1, c11);
    c21 = _mm512_fmadd_ps(v, x2, c21), c31 = _mm512_fmadd_ps(v, x3, c31);
    v = load(w + 2 * in + k, m);
    c02 = _mm512_fmadd_ps(v, x0, c02), c12 = _mm512_fmadd_ps(v, x1, c12);
    c22 = _mm512_fmadd_ps(v, x2, c22), c32 = _mm512_fmadd_ps(v, x3, c32);
    v = load(w + 3 * in + k, m);
    c03 = _mm512_fmadd_ps(v, x0, c03), c13 = _mm512_fmadd_ps(v, x1, c13);
    c23 = _mm512_fmadd_ps(v, x2, c23), c33 = _mm512_fmadd_ps(v, x3, c33);
  }
  _mm_storeu_ps(y, hsum4_512(c00, c01, c02, c03));
  _mm_storeu_ps(y + ys, hsum4_512(c10, c11, c12, c13));
  _mm_storeu_ps(y + 2 * ys, hsum4_512(c20, c21, c22, c23));
  _mm_storeu_ps(y + 3 * ys, hsum4_512(c30, c31, c32, c33));
}

// Four weight rows against one input row (the last rows of x when rows is not a multiple of 4).
__attribute__((target("avx512f"))) void block4x1(const float* w, int64_t in, const float* x,
                                                 float* y) {
  const __m512 z = _mm512_setzero_ps();
  __m512 c0 = z, c1 = z, c2 = z, c3 = z;
  for (int64_t k = 0; k < in; k += 16) {
    const __mmask16 m = step_mask(in, k);
    const __m512 x0 = load(x + k, m);
    c0 = _mm512_fmadd_ps(load(w + k, m), x0, c0);
    c1 = _mm512_fmadd_ps(load(w + in + k, m), x0, c1);
    c2 = _mm512_fmadd_ps(load(w + 2 * in + k, m), x0, c2);
    c3 = _mm512_fmadd_ps(load(w + 3 * in + k, m), x0, c3);
  }
  _mm_storeu_ps(y, hsum4_512(c0, c1, c2, c3));
}

// One weight row against one input row (the last rows of w when out is not a multiple of 4).
__attribute__((target("avx512f"))) float dot512(const float* a, const float* b, int64_t n) {
  __m512 s = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= n; k += 16)
    s = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), s);
  if (k < n) {
    const auto m = static_cast<__mmask16>((1u << (n - k)) - 1);
    s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + k), _mm512_maskz_loadu_ps(m, b + k), s);
  }
  const __m256 h = _mm256_add_ps(half256<0>(s), half256<1>(s));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

__attribute__((target("avx512f"))) void matmul_avx512(const float* w, int64_t in, int64_t r0,
                                                      int64_t r1, const float* x, int64_t xs,
                                                      int64_t rows, float* y, int64_t ys) {
  // 16 input rows at a time stay in L1/L2 while the weight rows pass over them in fours.
  constexpr int64_t kRowBlock = 16;
  for (int64_t rb = 0; rb < rows; rb += kRowBlock) {
    const int64_t re = std::min(rows, rb + kRowBlock);
    int64_t i = r0;
    for (; i + 4 <= r1; i += 4) {
      const float* wi = w + i * in;
      int64_t r = rb;
      for (; r + 4 <= re; r += 4) block4x4(wi, in, x + r * xs, xs, y + r * ys + i, ys);
      for (; r < re; ++r) block4x1(wi, in, x + r * xs, y + r * ys + i);
    }
    for (; i < r1; ++i)
      for (int64_t r = rb; r < re; ++r) y[r * ys + i] = dot512(w + i * in, x + r * xs, in);
  }
}

}  // namespace

bool has_matmul() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

void matmul_rows(const float* w, int64_t in, int64_t row_begin, int64_t row_end, const float* x,
                 int64_t x_stride, int64_t rows, float* y, int64_t y_stride) {
  matmul_avx512(w, in, row_begin, row_end, x, x_stride, rows, y, y_stride);
}

}  // namespace drafteu::kernels
