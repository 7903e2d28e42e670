// Many-row products (prefill, wide batches) on AVX-512 CPUs: y = x · wᵀ with w in Hugging Face's
// [out, in] layout, as dot products blocked 4 weight rows × 4 input rows. Sixteen accumulators
// make each loaded vector serve four FMAs, so the FMA units, not the loads, set the pace (the
// matrix-vector kernel loads one weight vector per FMA). The input rows are packed first (four
// rows interleaved 16 floats at a time) so that a block reads them as one sequential stream;
// w is read in place, once per block of input rows.
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
int64_t steps_of(int64_t in) {
  return (in + 15) / 16;
}

// Four weight rows (w, stride in) against one packed group of four input rows (xp): y[r, 0..3]
// for the group's first `valid` rows. Sixteen named accumulators: GCC 12 keeps an array of them
// in memory.
__attribute__((target("avx512f"))) void block4x4(const float* w, int64_t in, const float* xp,
                                                 float* y, int64_t ys, int64_t valid) {
  const __m512 z = _mm512_setzero_ps();
  __m512 c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z;
  __m512 c20 = z, c21 = z, c22 = z, c23 = z, c30 = z, c31 = z, c32 = z, c33 = z;
  for (int64_t k = 0; k < in; k += 16, xp += 64) {
    const __mmask16 m = step_mask(in, k);
    const __m512 x0 = _mm512_loadu_ps(xp), x1 = _mm512_loadu_ps(xp + 16),
                 x2 = _mm512_loadu_ps(xp + 32), x3 = _mm512_loadu_ps(xp + 48);
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
  const __m128 sums[4] = {hsum4_512(c00, c01, c02, c03), hsum4_512(c10, c11, c12, c13),
                          hsum4_512(c20, c21, c22, c23), hsum4_512(c30, c31, c32, c33)};
  for (int64_t r = 0; r < valid; ++r) _mm_storeu_ps(y + r * ys, sums[r]);
}

// One weight row against a packed group (the last rows of w when out is not a multiple of 4).
__attribute__((target("avx512f"))) void block1x4(const float* w, int64_t in, const float* xp,
                                                 float* y, int64_t ys, int64_t valid) {
  const __m512 z = _mm512_setzero_ps();
  __m512 c0 = z, c1 = z, c2 = z, c3 = z;
  for (int64_t k = 0; k < in; k += 16, xp += 64) {
    const __m512 v = load(w + k, step_mask(in, k));
    c0 = _mm512_fmadd_ps(v, _mm512_loadu_ps(xp), c0);
    c1 = _mm512_fmadd_ps(v, _mm512_loadu_ps(xp + 16), c1);
    c2 = _mm512_fmadd_ps(v, _mm512_loadu_ps(xp + 32), c2);
    c3 = _mm512_fmadd_ps(v, _mm512_loadu_ps(xp + 48), c3);
  }
  float sums[4];
  _mm_storeu_ps(sums, hsum4_512(c0, c1, c2, c3));
  for (int64_t r = 0; r < valid; ++r) y[r * ys] = sums[r];
}

__attribute__((target("avx512f"))) void matmul_avx512(const float* w, int64_t in, int64_t r0,
                                                      int64_t r1, const float* packed, int64_t rows,
                                                      float* y, int64_t ys) {
  const int64_t group_floats = steps_of(in) * 64, groups = (rows + 3) / 4;
  // Input rows in blocks that stay in L2 (2 MB here; 1 MB leaves room for the weights) while
  // every weight row passes over them: w is streamed once per block.
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 20) / (group_floats * 4));
  for (int64_t g0 = 0; g0 < groups; g0 += block) {
    const int64_t g1 = std::min(groups, g0 + block);
    int64_t i = r0;
    for (; i + 4 <= r1; i += 4)
      for (int64_t g = g0; g < g1; ++g)
        block4x4(w + i * in, in, packed + g * group_floats, y + g * 4 * ys + i, ys,
                 std::min<int64_t>(4, rows - g * 4));
    for (; i < r1; ++i)
      for (int64_t g = g0; g < g1; ++g)
        block1x4(w + i * in, in, packed + g * group_floats, y + g * 4 * ys + i, ys,
                 std::min<int64_t>(4, rows - g * 4));
  }
}

}  // namespace

bool has_matmul() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

int64_t packed_size(int64_t rows, int64_t in) {
  return (rows + 3) / 4 * steps_of(in) * 64;
}

void pack_rows(const float* x, int64_t x_stride, int64_t rows, int64_t in, float* packed) {
  const int64_t steps = steps_of(in);
  for (int64_t g = 0; g < (rows + 3) / 4; ++g)
    for (int64_t s = 0; s < steps; ++s)
      for (int64_t r = 0; r < 4; ++r) {
        float* out = packed + ((g * steps + s) * 4 + r) * 16;
        const int64_t row = g * 4 + r, k0 = s * 16, n = std::min<int64_t>(16, in - k0);
        for (int64_t k = 0; k < 16; ++k)
          out[k] = row < rows && k < n ? x[row * x_stride + k0 + k] : 0.0f;
      }
}

void matmul_rows(const float* w, int64_t in, int64_t row_begin, int64_t row_end,
                 const float* packed, int64_t rows, float* y, int64_t y_stride) {
  matmul_avx512(w, in, row_begin, row_end, packed, rows, y, y_stride);
}

}  // namespace drafteu::kernels
