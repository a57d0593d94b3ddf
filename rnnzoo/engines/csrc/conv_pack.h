// Rows <-> map blocks for the direct convolution (conv.h, conv_tiles.h). The drivers keep
// batch rows, row r = [map 0 | map 1 | ...] (n maps of W positions, column c*W + w); the
// tiles want L = Vec<T>::size() rows side by side, m[c][q][l]. Both directions are a
// transposition of L rows x L columns at a time (AVX2 float: 8 x 8 in registers), with the
// columns' positions in the block looked up as they go.
#pragma once

#include "runtime.h"

namespace rnnzoo_fused {

#if defined(CPU_CAPABILITY_AVX2) && !defined(CPU_CAPABILITY_AVX512)
#define RNNZOO_TRANSPOSE8 1
// r[i][l] <- r[l][i]: the 8 x 8 transpose
inline void transpose8(__m256 (&r)[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
  }
}
#else
#define RNNZOO_TRANSPOSE8 0
#endif

// column `col` of n maps of W positions: (map, position), advanced one column at a time
struct MapColumn {
  int64_t W, c = 0, w = 0;
  void next() {
    if (++w == W) w = 0, ++c;
  }
};

// dst[c][q0 + w][l] = src[l*ld + c*W + w] for the n maps, l < nl (lanes nl..L zero); each
// map's other positions of its Wp are zero
template <typename T>
void pack_block(int64_t n, int64_t W, int64_t Wp, int64_t q0, int64_t nl, const T* src,
                int64_t ld, T* dst) {
  constexpr int64_t L = Vec<T>::size();
  for (int64_t c = 0; c < n; ++c) {
    T* d = dst + c * Wp * L;
    for (int64_t i = 0; i < q0 * L; ++i) d[i] = T(0);
    for (int64_t i = (q0 + W) * L; i < Wp * L; ++i) d[i] = T(0);
  }
  const int64_t cols = n * W;
  int64_t col = 0;
  MapColumn at{W};
#if RNNZOO_TRANSPOSE8
  if constexpr (std::is_same_v<T, float> && L == 8) {
    for (; col + 8 <= cols; col += 8) {
      __m256 r[8];
      for (int l = 0; l < 8; ++l) {
        r[l] = l < nl ? _mm256_loadu_ps(src + l * ld + col) : _mm256_setzero_ps();
      }
      transpose8(r);
      for (int i = 0; i < 8; ++i, at.next()) {
        _mm256_storeu_ps(dst + (at.c * Wp + q0 + at.w) * 8, r[i]);
      }
    }
  }
#endif
  for (; col < cols; ++col, at.next()) {
    T* v = dst + (at.c * Wp + q0 + at.w) * L;
    for (int64_t l = 0; l < nl; ++l) v[l] = src[l * ld + col];
    for (int64_t l = nl; l < L; ++l) v[l] = T(0);
  }
}

// dst[l*ld + c*W + w] = m[c][w][l] for the n maps of m (Wm positions each), l < nl: plus
// bias[c*W + w] with a bias, else added to dst when `accumulate`, else stored
template <typename T>
void unpack_block(int64_t n, int64_t W, int64_t Wm, int64_t nl, const T* m, const T* bias,
                  bool accumulate, T* dst, int64_t ld) {
  constexpr int64_t L = Vec<T>::size();
  const int64_t cols = n * W;
  int64_t col = 0;
  MapColumn at{W};
#if RNNZOO_TRANSPOSE8
  if constexpr (std::is_same_v<T, float> && L == 8) {
    for (; col + 8 <= cols; col += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i, at.next()) r[i] = _mm256_loadu_ps(m + (at.c * Wm + at.w) * 8);
      transpose8(r);
      for (int l = 0; l < nl; ++l) {
        float* out = dst + l * ld + col;
        __m256 v = r[l];
        if (bias) {
          v = _mm256_add_ps(_mm256_loadu_ps(bias + col), v);
        } else if (accumulate) {
          v = _mm256_add_ps(_mm256_loadu_ps(out), v);
        }
        _mm256_storeu_ps(out, v);
      }
    }
  }
#endif
  for (; col < cols; ++col, at.next()) {
    const T* v = m + (at.c * Wm + at.w) * L;
    for (int64_t l = 0; l < nl; ++l) {
      T* out = dst + l * ld + col;
      *out = bias ? bias[col] + v[l] : (accumulate ? *out + v[l] : v[l]);
    }
  }
}

}  // namespace rnnzoo_fused
