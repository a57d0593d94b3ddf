// Kernel family: coRNN (rnnzoo/cells/cornn.py), packed state [y | z] (N = 2H).
// The interface is documented in ../family.h; the equations in the cell's module docstring.
#pragma once

#include "../family.h"

namespace rnnzoo_fused {

// S = [y|z] [W|Wz]^T + x V^T + b (the ONE GEMM, K = 2H); t = tanh(S);
// z' = z + dt (t - gamma y - eps z); y' = y + dt z'; state [y'|z'], output y' (the prefix).
// extra = [dt, gamma, eps] (constants: their gradient slots stay zero). Saved: t.
struct Cornn {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kStatePrefix;
  static constexpr bool kDirect = true;
  static int64_t gates(int64_t N, int64_t) { return N / 2; }
  static int64_t rec(int64_t N, int64_t) { return N / 2; }
  static int64_t saved(int64_t N, int64_t) { return N / 2; }
  static int64_t out(int64_t N, int64_t) { return N / 2; }
  static int64_t extra(int64_t, int64_t) { return 3; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t N = a.N, H = N / 2;
    const Vec<T> dt(a.p[0]), gamma(a.p[1]), eps(a.p[2]);
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * H;
      const T* hp = a.hp + r * N;
      T* h = a.h + r * N;
      T* act = a.act + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> t = vtanh(vload(s + j, n));
        Vec<T> y = vload(hp + j, n), z = vload(hp + H + j, n);
        Vec<T> z1 = z + dt * (t - gamma * y - eps * z);
        vstore(h + j, y + dt * z1, n);
        vstore(h + H + j, z1, n);
        vstore(act + j, t, n);
      });
    }
  }

  // with gy, gz = dL/dy', dL/dz' (dh): dz' = gz + dt gy; dpre = dz' dt (1 - t^2);
  // direct dL/dy = gy - dt gamma dz', direct dL/dz = (1 - dt eps) dz'
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t N = a.N, H = N / 2;
    const Vec<T> one(T(1)), dt(a.p[0]), dtg(a.p[0] * a.p[1]), keep(T(1) - a.p[0] * a.p[2]);
    for (int64_t r = 0; r < a.R; ++r) {
      const T* act = a.act + r * H;
      const T* dh = a.dh + r * N;
      T* dg = a.dG + r * H;
      T* direct = a.direct + r * N;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> t = vload(act + j, n), gy = vload(dh + j, n);
        Vec<T> dz = vload(dh + H + j, n) + dt * gy;
        vstore(dg + j, dz * dt * (one - t * t), n);
        vstore(direct + j, gy - dtg * dz, n);
        vstore(direct + H + j, keep * dz, n);
      });
    }
  }
};

RNNZOO_FAMILY(cornn, Cornn)

}  // namespace rnnzoo_fused
