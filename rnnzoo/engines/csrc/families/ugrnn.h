// Kernel family: UGRNN (rnnzoo/cells/ugrnn.py).
// The interface is documented in ../family.h; the equations in the cell's module docstring.
#pragma once

#include "../family.h"

namespace rnnzoo_fused {

// UGRNN: blocks c, g; c = tanh, g = sigma; h = c + g (h_prev - c). Saved: c, g.
struct Ugrnn {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = true;
  static int64_t gates(int64_t H, int64_t) { return 2 * H; }
  static int64_t rec(int64_t H, int64_t) { return 2 * H; }
  static int64_t saved(int64_t H, int64_t) { return 2 * H; }
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t, int64_t) { return 0; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 2 * H;
      const T* hp = a.hp + r * H;
      T* act = a.act + r * 2 * H;
      T* h = a.h + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> c = vtanh(vload(s + j, n));
        Vec<T> g = sigmoid(vload(s + H + j, n));
        vstore(h + j, c + g * (vload(hp + j, n) - c), n);
        vstore(act + j, c, n);
        vstore(act + H + j, g, n);
      });
    }
  }

  // dc = dh (1 - g); dg = dh (h_prev - c); direct dh_{t-1} = dh g
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N;
    const Vec<T> one(T(1));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* act = a.act + r * 2 * H;
      const T* hp = a.hp + r * H;
      const T* dh = a.dh + r * H;
      T* dg = a.dG + r * 2 * H;
      T* direct = a.direct + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> c = vload(act + j, n), g = vload(act + H + j, n);
        Vec<T> d = vload(dh + j, n);
        vstore(dg + j, d * (one - g) * (one - c * c), n);
        vstore(dg + H + j, d * (vload(hp + j, n) - c) * g * (one - g), n);
        vstore(direct + j, d * g, n);
      });
    }
  }
};

RNNZOO_FAMILY(ugrnn, Ugrnn)

}  // namespace rnnzoo_fused
