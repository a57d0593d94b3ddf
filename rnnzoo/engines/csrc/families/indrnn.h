// Kernel family: IndRNN (rnnzoo/cells/indrnn.py): an element-wise recurrence, no GEMM.
// The interface is documented in ../family.h; the equations in the cell's module docstring.
#pragma once

#include "../family.h"

namespace rnnzoo_fused {

// IndRNN: h = relu(x W^T + b + u (h_prev * mask)); no GEMM (extra = u, H)
struct IndRnn {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t H, int64_t) { return H; }
  static int64_t rec(int64_t, int64_t) { return 0; }
  static int64_t saved(int64_t, int64_t) { return 0; }
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t H, int64_t) { return H; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N;
    const T* u = a.p;
    const Vec<T> zero(T(0));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * H;
      const T* hr = a.hr + r * H;
      T* h = a.h + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> v = vload(s + j, n) + vload(u + j, n) * vload(hr + j, n);
        vstore(h + j, at::vec::maximum(v, zero), n);
      });
    }
  }

  // dpre = dh [h > 0]; d(h_prev * mask) = dpre u; du += dpre (h_prev * mask)
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N;
    const T* u = a.p;
    const Vec<T> zero(T(0));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* h = a.h + r * H;
      const T* hr = a.hr + r * H;
      const T* dh = a.dh + r * H;
      T* dg = a.dX + r * H;
      T* dhr = a.dhr + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> dpre = Vec<T>::blendv(zero, vload(dh + j, n), vload(h + j, n) > zero);
        vstore(dg + j, dpre, n);
        vstore(dhr + j, dpre * vload(u + j, n), n);
        vstore(a.acc + j, vload(a.acc + j, n) + dpre * vload(hr + j, n), n);
      });
    }
  }
};

RNNZOO_FAMILY(indrnn, IndRnn)

}  // namespace rnnzoo_fused
