// Kernel family: GRU (rnnzoo/cells/gru.py), torch.nn.GRU's gate order.
// The interface is documented in ../family.h; the equations in the cell's module docstring.
#pragma once

#include "../family.h"

namespace rnnzoo_fused {

// torch.nn.GRU: r, z, n; n = tanh(X_n + r (S_n + b_hn)); h = n + z (h_prev - n)
// (extra = b_hn, H). Saved: r, z, n, hn = S_n + b_hn.
struct Gru {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = false;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = true;
  static int64_t gates(int64_t H, int64_t) { return 3 * H; }
  static int64_t rec(int64_t H, int64_t) { return 3 * H; }
  static int64_t saved(int64_t H, int64_t) { return 4 * H; }
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t H, int64_t) { return H; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N;
    const T* bhn = a.p;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 3 * H;
      const T* xp = a.X + r * 3 * H;
      const T* hp = a.hp + r * H;
      T* act = a.act + r * 4 * H;
      T* h = a.h + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> rv = sigmoid(vload(xp + j, n) + vload(s + j, n));
        Vec<T> z = sigmoid(vload(xp + H + j, n) + vload(s + H + j, n));
        Vec<T> hn = vload(s + 2 * H + j, n) + vload(bhn + j, n);
        Vec<T> nv = vtanh(vload(xp + 2 * H + j, n) + rv * hn);
        vstore(h + j, nv + z * (vload(hp + j, n) - nv), n);
        vstore(act + j, rv, n);
        vstore(act + H + j, z, n);
        vstore(act + 2 * H + j, nv, n);
        vstore(act + 3 * H + j, hn, n);
      });
    }
  }

  // dn = dh (1 - z); dz = dh (h_prev - n); direct dh_{t-1} = dh z; dpre_n = dn (1 - n^2)
  // (input side), d(hn) = dpre_n r (GEMM side, and db_hn), dr = dpre_n hn
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N;
    const Vec<T> one(T(1));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* act = a.act + r * 4 * H;
      const T* hp = a.hp + r * H;
      const T* dh = a.dh + r * H;
      T* dg = a.dG + r * 3 * H;
      T* dx = a.dX + r * 3 * H;
      T* direct = a.direct + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> rv = vload(act + j, n), z = vload(act + H + j, n);
        Vec<T> nv = vload(act + 2 * H + j, n), hn = vload(act + 3 * H + j, n);
        Vec<T> d = vload(dh + j, n);
        Vec<T> dpn = d * (one - z) * (one - nv * nv);
        Vec<T> dhn = dpn * rv;
        Vec<T> dpr = dpn * hn * rv * (one - rv);
        Vec<T> dpz = d * (vload(hp + j, n) - nv) * z * (one - z);
        vstore(dg + j, dpr, n);
        vstore(dg + H + j, dpz, n);
        vstore(dg + 2 * H + j, dhn, n);
        vstore(dx + j, dpr, n);
        vstore(dx + H + j, dpz, n);
        vstore(dx + 2 * H + j, dpn, n);
        vstore(direct + j, d * z, n);
        vstore(a.acc + j, vload(a.acc + j, n) + dhn, n);
      });
    }
  }
};

RNNZOO_FAMILY(gru, Gru)

}  // namespace rnnzoo_fused
