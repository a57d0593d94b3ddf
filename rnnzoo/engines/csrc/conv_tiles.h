// The register tiles of the direct 1-D convolution (conv.h). Operands are map blocks that
// hold L = Vec<T>::size() batch rows side by side: m[c][q][l] (channel c, position q, batch
// row l; ld = positions * L per channel), so every operand is one vector load and the L rows'
// sums run in the lanes. No im2col and no packing: each tile reads the maps in place.
//
//   correlate    out[o][w] = sum_{c, j} K[o, c*k + j] in[c][w + j]   (the forward product;
//                with the flipped, transposed kernel also the gradient of the maps)
//   kernel_grad  dKv[o][c*k + j] += sum_w dy[o][w] z[c][w + j]       (lanes summed at the end)
//
// A tile keeps kTileO x kTileW (forward) or kGradO x kGradJ (kernel gradient) vector
// accumulators in registers, 8 or 10 of AVX2's 16, with 2 for the broadcast kernel values
// or the gradient rows. The sizes were measured (tile alone, 16 and 64 output channels, 17
// maps, k = 5, W = 28, 1 thread, 92 GFLOP/s FMA peak): correlate 2 x 4 at 78-82 GFLOP/s (2 x 6,
// 4 x 3, 4 x 4: 41-48, their accumulators spill), kernel_grad 2 x 5 at 71-85 (3 x 5, 4 x 5: 36-40).
#pragma once

#include "runtime.h"

namespace rnnzoo_fused {

// a tile is a function of its own: inlined into its loops, GCC allocated the registers
// worse (kernel_grad 52 vs 72 GFLOP/s)
#if defined(__GNUC__)
#define RNNZOO_TILE __attribute__((noinline))
#else
#define RNNZOO_TILE
#endif

constexpr int kTileO = 2, kTileW = 4;  // correlate: output channels x positions
constexpr int kGradO = 2, kGradJ = 5;  // kernel_grad: output channels x taps of one map

// out[i][w] = sum_{c < n_in, j < k} K[i*ldk + c*k + j] in[c*ldi + (w + j)*L] for i < OB,
// w < WB (vectors of L lanes); out rows ldo apart. KC > 0: k == KC, known to the compiler
template <typename T, int OB, int WB, int KC>
RNNZOO_TILE void corr_tile(const T* __restrict K, int64_t ldk, int64_t n_in, int64_t k_arg,
                           const T* __restrict in, int64_t ldi, T* __restrict out, int64_t ldo) {
  constexpr int64_t L = Vec<T>::size();
  const int64_t k = KC > 0 ? KC : k_arg;
  Vec<T> acc[OB][WB];
  for (int i = 0; i < OB; ++i) {
    for (int w = 0; w < WB; ++w) acc[i][w] = Vec<T>(T(0));
  }
  for (int64_t c = 0; c < n_in; ++c) {
    for (int64_t j = 0; j < k; ++j) {
      const T* kc = K + c * k + j;
      const T* ip = in + c * ldi + j * L;
      Vec<T> kb[OB];
      for (int i = 0; i < OB; ++i) kb[i] = Vec<T>(kc[i * ldk]);
      for (int w = 0; w < WB; ++w) {
        const Vec<T> z = Vec<T>::loadu(ip + w * L);
        for (int i = 0; i < OB; ++i) acc[i][w] = at::vec::fmadd(kb[i], z, acc[i][w]);
      }
    }
  }
  for (int i = 0; i < OB; ++i) {
    for (int w = 0; w < WB; ++w) acc[i][w].store(out + i * ldo + w * L);
  }
}

// correlate with k == KC (any k when KC == 0)
template <typename T, int KC>
void correlate_k(const T* K, int64_t n_out, int64_t n_in, int64_t k, const T* in, int64_t Wp,
                 int64_t Wr, T* out) {
  constexpr int64_t L = Vec<T>::size();
  const int64_t ldk = n_in * k, ldi = Wp * L, ldo = Wr * L;
  int64_t o = 0;
  for (; o + kTileO <= n_out; o += kTileO) {
    for (int64_t w = 0; w < Wr; w += kTileW) {
      corr_tile<T, kTileO, kTileW, KC>(K + o * ldk, ldk, n_in, k, in + w * L, ldi,
                                       out + o * ldo + w * L, ldo);
    }
  }
  for (; o < n_out; ++o) {
    for (int64_t w = 0; w < Wr; w += kTileW) {
      corr_tile<T, 1, kTileW, KC>(K + o * ldk, ldk, n_in, k, in + w * L, ldi,
                                  out + o * ldo + w * L, ldo);
    }
  }
}

// out (n_out, Wr positions) = the correlation of the n_in maps of `in` (Wp = Wr + k - 1
// positions each, zero where there is no input) with K (n_out, n_in*k); Wr % kTileW == 0.
// The usual kernel sizes get tiles compiled for their k: with k unknown, GCC reuses loaded
// vectors across taps (predictive commoning) and spills accumulators (measured 53 vs 82
// GFLOP/s at k = 5)
template <typename T>
void correlate(const T* K, int64_t n_out, int64_t n_in, int64_t k, const T* in, int64_t Wp,
               int64_t Wr, T* out) {
  switch (k) {
    case 3:
      return correlate_k<T, 3>(K, n_out, n_in, k, in, Wp, Wr, out);
    case 5:
      return correlate_k<T, 5>(K, n_out, n_in, k, in, Wp, Wr, out);
    case 7:
      return correlate_k<T, 7>(K, n_out, n_in, k, in, Wp, Wr, out);
    default:
      return correlate_k<T, 0>(K, n_out, n_in, k, in, Wp, Wr, out);
  }
}

// dKv[i*ldkv + u*L] += sum_{w < W} dy[i*ldy + w*L] z[(w + u)*L] for i < OB, u < JB: taps j0
// .. j0 + JB - 1 of one map, z pointing at its position j0 (one base pointer: with a pointer
// per tap the tile ran at half the speed)
template <typename T, int OB, int JB>
RNNZOO_TILE void grad_tile(const T* __restrict dy, int64_t ldy, const T* __restrict z, int64_t W,
                      T* __restrict dKv, int64_t ldkv) {
  constexpr int64_t L = Vec<T>::size();
  Vec<T> acc[OB][JB];
  for (int i = 0; i < OB; ++i) {
    for (int u = 0; u < JB; ++u) acc[i][u] = Vec<T>(T(0));
  }
  for (int64_t w = 0; w < W; ++w) {
    Vec<T> d[OB];
    for (int i = 0; i < OB; ++i) d[i] = Vec<T>::loadu(dy + i * ldy + w * L);
    for (int u = 0; u < JB; ++u) {
      const Vec<T> zv = Vec<T>::loadu(z + (w + u) * L);
      for (int i = 0; i < OB; ++i) acc[i][u] = at::vec::fmadd(d[i], zv, acc[i][u]);
    }
  }
  for (int i = 0; i < OB; ++i) {
    for (int u = 0; u < JB; ++u) {
      T* p = dKv + i * ldkv + u * L;
      (Vec<T>::loadu(p) + acc[i][u]).store(p);
    }
  }
}

// a tile of the last n < JB taps of a map
template <typename T, int OB, int JB>
inline void grad_rest(int64_t n, const T* dy, int64_t ldy, const T* z, int64_t W, T* dKv,
                      int64_t ldkv) {
  if constexpr (JB > 0) {
    if (n == JB) {
      grad_tile<T, OB, JB>(dy, ldy, z, W, dKv, ldkv);
    } else {
      grad_rest<T, OB, JB - 1>(n, dy, ldy, z, W, dKv, ldkv);
    }
  }
}

// every tap of every map for OB output channels
template <typename T, int OB>
inline void grad_taps(const T* dy, int64_t ldy, const T* z, int64_t ldz, int64_t n_in,
                      int64_t k, int64_t W, T* dKv, int64_t ldkv) {
  constexpr int64_t L = Vec<T>::size();
  for (int64_t c = 0; c < n_in; ++c) {
    int64_t j = 0;
    for (; j + kGradJ <= k; j += kGradJ) {
      grad_tile<T, OB, kGradJ>(dy, ldy, z + c * ldz + j * L, W, dKv + (c * k + j) * L, ldkv);
    }
    grad_rest<T, OB, kGradJ - 1>(k - j, dy, ldy, z + c * ldz + j * L, W,
                                 dKv + (c * k + j) * L, ldkv);
  }
}

// dKv (n_out, n_in*k, L) += the lane-wise kernel gradient: dKv[o][c*k + j] += sum_{w < W}
// dy[o][w] z[c][w + j], dy rows ldy apart, z channels ldz apart
template <typename T>
void kernel_grad(const T* dy, int64_t ldy, int64_t n_out, const T* z, int64_t ldz, int64_t n_in,
                 int64_t k, int64_t W, T* dKv) {
  constexpr int64_t L = Vec<T>::size();
  const int64_t n_taps = n_in * k, ldkv = n_taps * L;
  int64_t o = 0;
  for (; o + kGradO <= n_out; o += kGradO) {
    grad_taps<T, kGradO>(dy + o * ldy, ldy, z, ldz, n_in, k, W, dKv + o * ldkv, ldkv);
  }
  for (; o < n_out; ++o) {
    grad_taps<T, 1>(dy + o * ldy, ldy, z, ldz, n_in, k, W, dKv + o * ldkv, ldkv);
  }
}

}  // namespace rnnzoo_fused
