// Kernel family: Elman RNN (rnnzoo/cells/elman.py): rnn (tanh) and irnn (relu).
// The interface is documented in ../family.h; the equations in the cell's module docstring.
#pragma once

#include "../family.h"

namespace rnnzoo_fused {

// h_t = act(pre), pre = x W_ih^T + b + (h * mask) W_hh^T
template <bool kRelu>
struct Elman {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t H, int64_t) { return H; }
  static int64_t rec(int64_t H, int64_t) { return H; }
  static int64_t saved(int64_t, int64_t) { return 0; }
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t, int64_t) { return 0; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N;
    const Vec<T> zero(T(0));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * H;
      T* h = a.h + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> v = vload(s + j, n);
        vstore(h + j, kRelu ? at::vec::maximum(v, zero) : vtanh(v), n);
      });
    }
  }

  // tanh: dpre = dh (1 - h^2); relu: dpre = dh [h > 0]
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N;
    const Vec<T> one(T(1)), zero(T(0));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* h = a.h + r * H;
      const T* dh = a.dh + r * H;
      T* dg = a.dG + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> hv = vload(h + j, n), d = vload(dh + j, n);
        Vec<T> dpre = kRelu ? Vec<T>::blendv(zero, d, hv > zero) : d * (one - hv * hv);
        vstore(dg + j, dpre, n);
      });
    }
  }
};

RNNZOO_FAMILY(elman_tanh, Elman<false>)
RNNZOO_FAMILY(elman_relu, Elman<true>)

}  // namespace rnnzoo_fused
