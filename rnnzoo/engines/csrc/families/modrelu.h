// Kernel family: Elman with modReLU (rnnzoo/cells/exprnn.py: expRNN's orthogonal W).
// The interface is documented in ../family.h; the equations in the cell's module docstring.
#pragma once

#include "../family.h"

namespace rnnzoo_fused {

// z = x W_ih^T + b + (h * mask) W^T; h' = sign(z) relu(|z| + c), c the modReLU bias
// (extra, H, with gradient). Saved: z.
struct ModRelu {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t N, int64_t) { return N; }
  static int64_t rec(int64_t N, int64_t) { return N; }
  static int64_t saved(int64_t N, int64_t) { return N; }
  static int64_t out(int64_t N, int64_t) { return N; }
  static int64_t extra(int64_t N, int64_t) { return N; }

  template <typename T>
  static Vec<T> sign(const Vec<T>& z) {
    const Vec<T> zero(T(0)), one(T(1));
    return Vec<T>::blendv(zero, one, z > zero) - Vec<T>::blendv(zero, one, z < zero);
  }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N;
    const T* c = a.p;
    const Vec<T> zero(T(0));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * H;
      T* h = a.h + r * H;
      T* act = a.act + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> z = vload(s + j, n);
        Vec<T> mag = at::vec::maximum(z.abs() + vload(c + j, n), zero);
        vstore(h + j, sign(z) * mag, n);
        vstore(act + j, z, n);
      });
    }
  }

  // on = [|z| + c > 0]; dz = dh on sign(z)^2; dc += dh on sign(z)
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N;
    const T* c = a.p;
    const Vec<T> zero(T(0));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* act = a.act + r * H;
      const T* dh = a.dh + r * H;
      T* dg = a.dG + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> z = vload(act + j, n), sg = sign(z);
        Vec<T> g = Vec<T>::blendv(zero, vload(dh + j, n), (z.abs() + vload(c + j, n)) > zero);
        Vec<T> gs = g * sg;
        vstore(dg + j, gs * sg, n);
        vstore(a.acc + j, vload(a.acc + j, n) + gs, n);
      });
    }
  }
};

RNNZOO_FAMILY(modrelu, ModRelu)

}  // namespace rnnzoo_fused
