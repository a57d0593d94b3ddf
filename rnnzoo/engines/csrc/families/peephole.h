// Kernel family: Peephole LSTM (rnnzoo/cells/peephole.py).
// The interface is documented in ../family.h; the equations in the cell's module docstring.
#pragma once

#include "../family.h"

namespace rnnzoo_fused {

// peephole LSTM: i, f see c_{t-1} through p_i, p_f; o sees c_t through p_o (extra = [p_i,
// p_f, p_o], 3H)
struct Peephole {
  static constexpr int kStates = 2;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t H, int64_t) { return 4 * H; }
  static int64_t rec(int64_t H, int64_t) { return 4 * H; }
  static int64_t saved(int64_t H, int64_t) { return 4 * H; }
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t H, int64_t) { return 3 * H; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N;
    const T* pi = a.p;
    const T* pf = a.p + H;
    const T* po = a.p + 2 * H;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 4 * H;
      T* act = a.act + r * 4 * H;
      const T* cp = a.cp + r * H;
      T* c = a.c + r * H;
      T* h = a.h + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> cpv = vload(cp + j, n);
        Vec<T> i = sigmoid(vload(s + j, n) + vload(pi + j, n) * cpv);
        Vec<T> f = sigmoid(vload(s + H + j, n) + vload(pf + j, n) * cpv);
        Vec<T> g = vtanh(vload(s + 2 * H + j, n));
        Vec<T> cv = f * cpv + i * g;
        Vec<T> o = sigmoid(vload(s + 3 * H + j, n) + vload(po + j, n) * cv);
        vstore(c + j, cv, n);
        vstore(h + j, o * vtanh(cv), n);
        vstore(act + j, i, n);
        vstore(act + H + j, f, n);
        vstore(act + 2 * H + j, g, n);
        vstore(act + 3 * H + j, o, n);
      });
    }
  }

  // as the LSTM, plus: dpre_o feeds dc_t through p_o, dpre_i and dpre_f feed dc_{t-1}
  // through p_i, p_f; dp_i += dpre_i c_{t-1}, dp_f += dpre_f c_{t-1}, dp_o += dpre_o c_t
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N;
    const T* pi = a.p;
    const T* pf = a.p + H;
    const T* po = a.p + 2 * H;
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
        Vec<T> cv = vload(c + j, n), cpv = vload(cp + j, n);
        Vec<T> tc = vtanh(cv);
        Vec<T> d = vload(dh + j, n);
        Vec<T> dpo = d * tc * o * (one - o);
        Vec<T> dct = vload(dc + j, n) + d * o * (one - tc * tc) + dpo * vload(po + j, n);
        Vec<T> dpi = dct * g * i * (one - i);
        Vec<T> dpf = dct * cpv * f * (one - f);
        vstore(dg + j, dpi, n);
        vstore(dg + H + j, dpf, n);
        vstore(dg + 2 * H + j, dct * i * (one - g * g), n);
        vstore(dg + 3 * H + j, dpo, n);
        vstore(dc + j, dct * f + dpi * vload(pi + j, n) + dpf * vload(pf + j, n), n);
        T* acc = a.acc;
        vstore(acc + j, vload(acc + j, n) + dpi * cpv, n);
        vstore(acc + H + j, vload(acc + H + j, n) + dpf * cpv, n);
        vstore(acc + 2 * H + j, vload(acc + 2 * H + j, n) + dpo * cv, n);
      });
    }
  }
};

RNNZOO_FAMILY(peephole, Peephole)

}  // namespace rnnzoo_fused
