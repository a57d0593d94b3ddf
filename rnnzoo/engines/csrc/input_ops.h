// The input side of a step, shared by the drivers (forward.cpp, backward.cpp, lmu.cpp):
// the input pre-activations b + x W_ih^T and their weight gradient for tiny inputs, and the
// shard-ordered sum of per-shard partial gradients.
#pragma once

#include "runtime.h"

namespace rnnzoo_fused {

// input pre-activations of R rows: out (R, ldo) = b + x W_ih^T
template <typename T>
inline void input_preact(int64_t R, int64_t I, int64_t G, const T* x, const T* w_ih,
                         const T* w_ih_t, const T* b, T* out, int64_t ldo) {
  if (I > kSmallInput) {
    for (int64_t r = 0; r < R; ++r) std::copy(b, b + G, out + r * ldo);
    mm_nt<T>(R, G, I, x, I, w_ih, I, T(1), out, ldo);
    return;
  }
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * I;
    T* o = out + r * ldo;
    for_lanes<T>(G, [&](int64_t j, int64_t n) {
      Vec<T> v = vload(b + j, n);
      for (int64_t i = 0; i < I; ++i) {
        v = at::vec::fmadd(Vec<T>(xr[i]), vload(w_ih_t + i * G + j, n), v);
      }
      vstore(o + j, v, n);
    });
  }
}

// dWin (I + 1, G) += [x | 1]^T dX over R rows, for inputs of at most kSmallInput. Row by
// row: the running sums stay in L1 and every row's update is independent, where a loop
// over rows per column chained one fma per row (measured: a third of minLSTM's sMNIST
// backward). The same additions in the same order, so the same bits.
template <typename T>
inline void accumulate_small_input(int64_t R, int64_t I, int64_t G, const T* x,
                                   const T* dX, T* dWin) {
  for (int64_t r = 0; r < R; ++r) {
    const T* v = dX + r * G;
    for (int64_t i = 0; i < I; ++i) {
      const Vec<T> xi(x[r * I + i]);
      T* w = dWin + i * G;
      for_lanes<T>(G, [&](int64_t j, int64_t n) {
        vstore(w + j, at::vec::fmadd(xi, vload(v + j, n), vload(w + j, n)), n);
      });
    }
    T* w = dWin + I * G;
    for_lanes<T>(G, [&](int64_t j, int64_t n) {
      vstore(w + j, vload(w + j, n) + vload(v + j, n), n);
    });
  }
}

// out[e] = sum over shards s (in order) of part[s * stride + e], e < n
template <typename T>
inline void sum_shards(int64_t shards, int64_t n, int64_t stride, const T* part, T* out) {
  for (int64_t e = 0; e < n; ++e) {
    T v = 0;
    for (int64_t s = 0; s < shards; ++s) v += part[s * stride + e];
    out[e] = v;
  }
}

}  // namespace rnnzoo_fused
