// Kernel family: LSTM (rnnzoo/cells/lstm.py), torch.nn.LSTM's gate order.
// The interface is documented in ../family.h; the equations in the cell's module docstring.
#pragma once

#include "../family.h"

namespace rnnzoo_fused {

// torch.nn.LSTM: gates i, f, g, o; c = f c_prev + i g; h = o tanh(c)
struct Lstm {
  static constexpr int kStates = 2;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t H, int64_t) { return 4 * H; }
  static int64_t rec(int64_t H, int64_t) { return 4 * H; }
  static int64_t saved(int64_t H, int64_t) { return 4 * H; }
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t, int64_t) { return 0; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 4 * H;
      T* act = a.act + r * 4 * H;
      const T* cp = a.cp + r * H;
      T* c = a.c + r * H;
      T* h = a.h + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> i = sigmoid(vload(s + j, n));
        Vec<T> f = sigmoid(vload(s + H + j, n));
        Vec<T> g = vtanh(vload(s + 2 * H + j, n));
        Vec<T> o = sigmoid(vload(s + 3 * H + j, n));
        Vec<T> cv = f * vload(cp + j, n) + i * g;
        vstore(c + j, cv, n);
        vstore(h + j, o * vtanh(cv), n);
        vstore(act + j, i, n);
        vstore(act + H + j, f, n);
        vstore(act + 2 * H + j, g, n);
        vstore(act + 3 * H + j, o, n);
      });
    }
  }

  // tc = tanh(c); dc_t += dh o (1 - tc^2); d_o = dh tc; d_i = dc g; d_f = dc c_prev;
  // d_g = dc i; pre-activation grads through sigma' = s (1 - s), tanh' = 1 - g^2;
  // dc_{t-1} = dc_t f
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N;
    const Vec<T> one(T(1));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* act = a.act + r * 4 * H;
      const T* c = a.c + r * H;
      const T* cp = a.cp + r * H;
      const T* dh = a.dh + r * H;
      T* dc = a.dc + r * H;
      T* dg = a.dG + r * 4 * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> i = vload(act + j, n), f = vload(act + H + j, n);
        Vec<T> g = vload(act + 2 * H + j, n), o = vload(act + 3 * H + j, n);
        Vec<T> tc = vtanh(vload(c + j, n));
        Vec<T> d = vload(dh + j, n);
        Vec<T> dct = vload(dc + j, n) + d * o * (one - tc * tc);
        vstore(dg + j, dct * g * i * (one - i), n);
        vstore(dg + H + j, dct * vload(cp + j, n) * f * (one - f), n);
        vstore(dg + 2 * H + j, dct * i * (one - g * g), n);
        vstore(dg + 3 * H + j, d * tc * o * (one - o), n);
        vstore(dc + j, dct * f, n);
      });
    }
  }
};

RNNZOO_FAMILY(lstm, Lstm)

}  // namespace rnnzoo_fused
