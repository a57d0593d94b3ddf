// Kernel family: Legendre Memory Unit (rnnzoo/cells/lmu.py), packed state [h | m]
// (N = H + order). The interface is documented in ../family.h; the equations and the
// combined matrix in the cell's module docstring.
#pragma once

#include "../family.h"

namespace rnnzoo_fused {

// S = x W_ih^T + [h|m]_masked W_hh^T (ONE GEMM, the cell's combined (N, N) matrix);
// h' = tanh(S[:H]), m' = S[H:]. The split H is not a function of N: it travels as
// extra = [H] (a constant). The output is the packed state; the Python side keeps its
// first H columns. Nothing saved: tanh' comes from h' itself.
struct Lmu {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t N, int64_t) { return N; }
  static int64_t rec(int64_t N, int64_t) { return N; }
  static int64_t saved(int64_t, int64_t) { return 0; }
  static int64_t out(int64_t N, int64_t) { return N; }
  static int64_t extra(int64_t, int64_t) { return 1; }

  template <typename T>
  static int64_t split(const T* p, int64_t N) {
    return std::min<int64_t>(N, std::max<int64_t>(0, static_cast<int64_t>(p[0] + T(0.5))));
  }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t N = a.N, H = split(a.p, N);
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * N;
      T* h = a.h + r * N;
      for_lanes<T>(H, [&](int64_t j, int64_t n) { vstore(h + j, vtanh(vload(s + j, n)), n); });
      std::copy(s + H, s + N, h + H);
    }
  }

  // dS[:H] = dh (1 - h'^2); dS[H:] = dm'
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t N = a.N, H = split(a.p, N);
    const Vec<T> one(T(1));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* h = a.h + r * N;
      const T* dh = a.dh + r * N;
      T* dg = a.dG + r * N;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> hv = vload(h + j, n);
        vstore(dg + j, vload(dh + j, n) * (one - hv * hv), n);
      });
      std::copy(dh + H, dh + N, dg + H);
    }
  }
};

RNNZOO_FAMILY(lmu, Lmu)

}  // namespace rnnzoo_fused
