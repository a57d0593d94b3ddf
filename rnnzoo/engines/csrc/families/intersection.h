// Kernel family: Intersection RNN / +RNN (rnnzoo/cells/intersection.py).
// The interface is documented in ../family.h; the equations in the cell's module docstring.
#pragma once

#include "../family.h"

namespace rnnzoo_fused {

// Intersection RNN: blocks g_y (I), g_h (H), y_in (I), h_in (H); y = y_in + g_y (x - y_in),
// h = h_in + g_h (h_prev - h_in). The output y (width I) is not the state.
struct Intersection {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kOwn;
  static constexpr bool kDirect = true;
  static int64_t gates(int64_t H, int64_t I) { return 2 * I + 2 * H; }
  static int64_t rec(int64_t H, int64_t I) { return 2 * I + 2 * H; }
  static int64_t saved(int64_t H, int64_t I) { return 2 * I + 2 * H; }
  static int64_t out(int64_t, int64_t I) { return I; }
  static int64_t extra(int64_t, int64_t) { return 0; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N, I = a.I, G = 2 * I + 2 * H;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * G;
      const T* x = a.x + r * I;
      const T* hp = a.hp + r * H;
      T* act = a.act + r * G;
      T* y = a.y + r * I;
      T* h = a.h + r * H;
      for_lanes<T>(I, [&](int64_t j, int64_t n) {
        Vec<T> gy = sigmoid(vload(s + j, n));
        Vec<T> yin = vtanh(vload(s + I + H + j, n));
        vstore(y + j, yin + gy * (vload(x + j, n) - yin), n);
        vstore(act + j, gy, n);
        vstore(act + I + H + j, yin, n);
      });
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> gh = sigmoid(vload(s + I + j, n));
        Vec<T> hin = vtanh(vload(s + 2 * I + H + j, n));
        vstore(h + j, hin + gh * (vload(hp + j, n) - hin), n);
        vstore(act + I + j, gh, n);
        vstore(act + 2 * I + H + j, hin, n);
      });
    }
  }

  // y path: dgy = dy (x - y_in), dy_in = dy (1 - g_y), direct dx = dy g_y;
  // h path: dgh = dh (h_prev - h_in), dh_in = dh (1 - g_h), direct dh_{t-1} = dh g_h
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N, I = a.I, G = 2 * I + 2 * H;
    const Vec<T> one(T(1)), zero(T(0));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* act = a.act + r * G;
      const T* x = a.x + r * I;
      const T* hp = a.hp + r * H;
      const T* dh = a.dh + r * H;
      const T* dy = a.dy ? a.dy + r * I : nullptr;
      T* dg = a.dG + r * G;
      T* dx = a.dx ? a.dx + r * I : nullptr;
      T* direct = a.direct + r * H;
      for_lanes<T>(I, [&](int64_t j, int64_t n) {
        Vec<T> gy = vload(act + j, n), yin = vload(act + I + H + j, n);
        Vec<T> d = dy ? vload(dy + j, n) : zero;
        vstore(dg + j, d * (vload(x + j, n) - yin) * gy * (one - gy), n);
        vstore(dg + I + H + j, d * (one - gy) * (one - yin * yin), n);
        if (dx) vstore(dx + j, d * gy, n);
      });
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> gh = vload(act + I + j, n), hin = vload(act + 2 * I + H + j, n);
        Vec<T> d = vload(dh + j, n);
        vstore(dg + I + j, d * (vload(hp + j, n) - hin) * gh * (one - gh), n);
        vstore(dg + 2 * I + H + j, d * (one - gh) * (one - hin * hin), n);
        vstore(direct + j, d * gh, n);
      });
    }
  }
};

RNNZOO_FAMILY(intersection, Intersection)

}  // namespace rnnzoo_fused
