// Kernel family: leaky integrators (rnnzoo/cells/leaky.py, and rnnzoo/cells/esn.py with one
// fixed rate for every unit). The interface is documented in ../family.h; the equations in
// the cells' module docstrings.
#pragma once

#include "../family.h"

namespace rnnzoo_fused {

// h = h_prev + a (c - h_prev), c = tanh(x W^T + b + (h_prev * mask) U^T); extra = a (H,).
// Saved: c. The leak term uses the unmasked h_prev (the mask acts only in the GEMM).
struct Leaky {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = true;
  static int64_t gates(int64_t H, int64_t) { return H; }
  static int64_t rec(int64_t H, int64_t) { return H; }
  static int64_t saved(int64_t H, int64_t) { return H; }
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t H, int64_t) { return H; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N;
    const T* rate = a.p;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * H;
      const T* hp = a.hp + r * H;
      T* act = a.act + r * H;
      T* h = a.h + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> c = vtanh(vload(s + j, n));
        Vec<T> p = vload(hp + j, n);
        vstore(h + j, p + vload(rate + j, n) * (c - p), n);
        vstore(act + j, c, n);
      });
    }
  }

  // dS = dh a (1 - c^2); direct dh_{t-1} = dh (1 - a); da += dh (c - h_prev)
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N;
    const T* rate = a.p;
    const Vec<T> one(T(1));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* act = a.act + r * H;
      const T* hp = a.hp + r * H;
      const T* dh = a.dh + r * H;
      T* dg = a.dG + r * H;
      T* direct = a.direct + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> c = vload(act + j, n), d = vload(dh + j, n), k = vload(rate + j, n);
        vstore(dg + j, d * k * (one - c * c), n);
        vstore(direct + j, d * (one - k), n);
        vstore(a.acc + j, vload(a.acc + j, n) + d * (c - vload(hp + j, n)), n);
      });
    }
  }
};

RNNZOO_FAMILY(leaky, Leaky)

}  // namespace rnnzoo_fused
