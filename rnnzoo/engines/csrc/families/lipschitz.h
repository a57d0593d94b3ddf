// Kernel family: Lipschitz RNN (rnnzoo/cells/lipschitz.py).
// The interface is documented in ../family.h; the equations in the cell's module docstring.
#pragma once

#include "../family.h"

namespace rnnzoo_fused {

// ONE GEMM with the stacked [A; W] (2H, H): S = [hr A^T | hr W^T]; X = x U^T + b kept apart;
// t = tanh(S_W + X); h' = h + eps (S_A + t). extra = [eps] (a constant). Saved: t.
struct Lipschitz {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = false;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = true;
  static int64_t gates(int64_t N, int64_t) { return N; }
  static int64_t rec(int64_t N, int64_t) { return 2 * N; }
  static int64_t saved(int64_t N, int64_t) { return N; }
  static int64_t out(int64_t N, int64_t) { return N; }
  static int64_t extra(int64_t, int64_t) { return 1; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N;
    const Vec<T> eps(a.p[0]);
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 2 * H;
      const T* x = a.X + r * H;
      const T* hp = a.hp + r * H;
      T* h = a.h + r * H;
      T* act = a.act + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> t = vtanh(vload(s + H + j, n) + vload(x + j, n));
        vstore(h + j, vload(hp + j, n) + eps * (vload(s + j, n) + t), n);
        vstore(act + j, t, n);
      });
    }
  }

  // dS_A = eps dh; dS_W = dX = eps dh (1 - t^2); direct dL/dh_{t-1} = dh (the carried h)
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N;
    const Vec<T> one(T(1)), eps(a.p[0]);
    for (int64_t r = 0; r < a.R; ++r) {
      const T* act = a.act + r * H;
      const T* dh = a.dh + r * H;
      T* dg = a.dG + r * 2 * H;
      T* dx = a.dX + r * H;
      T* direct = a.direct + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> t = vload(act + j, n), d = vload(dh + j, n);
        Vec<T> dpre = eps * d * (one - t * t);
        vstore(dg + j, eps * d, n);
        vstore(dg + H + j, dpre, n);
        vstore(dx + j, dpre, n);
        vstore(direct + j, d, n);
      });
    }
  }
};

RNNZOO_FAMILY(lipschitz, Lipschitz)

}  // namespace rnnzoo_fused
