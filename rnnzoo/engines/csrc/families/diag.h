// Kernel families of the element-wise linear recurrences h_t = a_t * (h_{t-1} * mask) + b_t:
// minGRU, minLSTM (rnnzoo/cells/mingru.py, minlstm.py) and the LRU (rnnzoo/cells/lru.py).
// The interface is documented in ../family.h; the equations in the cells' module docstrings.
// No GEMM (rec = 0): the whole step is element-wise, like IndRNN's. Each family returns the
// state sequence (Output::kState); the cells' output maps (LRU's Re(C h) + D x, the optional
// GLU block) run in Python, batched over time.
//
// The gated families' step is element-wise and linear in hr, so its Jacobian is a few
// diagonals (dh/dk per gate, dh/dhr). Forward computes the gates once and keeps those
// diagonals; backward is one product each, no exp. The diagonals of a row are interleaved per
// vector of lanes, K of them for the lanes [j, j + n) at K j + k n (k < K): one contiguous
// stream each way, written past the caches (vstream: read back only in backward). Measured
// against keeping the pre-activations and recomputing the gates in backward (kernel time of
// both passes, B = 128, H = 128, T = 784, one thread, with backward.cpp's row-wise
// [dW_ih | db]): minGRU 103 -> 57 ms, minLSTM 415 -> 81 ms (its gates went through softplus
// then: four exps and two log1p per element and pass).
#pragma once

#include "../family.h"

namespace rnnzoo_fused {

// g(v) = v + 0.5 (v >= 0) or sigmoid(v), and g'(v) (1 or sigmoid(v)(1 - sigmoid(v)))
template <typename T>
inline void min_g(const Vec<T>& v, Vec<T>& g, Vec<T>& dg) {
  const Vec<T> zero(T(0)), one(T(1)), half(T(0.5));
  const Vec<T> s = sigmoid(v);
  const Vec<T> pos = v >= zero;
  g = Vec<T>::blendv(s, v + half, pos);
  dg = Vec<T>::blendv(s * (one - s), one, pos);
}

// minGRU: S = [k_z | k_h] (R, 2H); z = sigmoid(k_z), h = (1 - z) hr + z g(k_h)
struct MinGru {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t H, int64_t) { return 2 * H; }
  static int64_t rec(int64_t, int64_t) { return 0; }
  static int64_t saved(int64_t H, int64_t) { return 3 * H; }  // dh/d[k_z | k_h | hr]
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t, int64_t) { return 0; }

  // dh/dk_z = (g - hr) z (1 - z); dh/dk_h = z g'(k_h); dh/dhr = 1 - z
  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N;
    const Vec<T> one(T(1));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 2 * H;
      const T* hr = a.hr + r * H;
      T* h = a.h + r * H;
      T* jac = a.act ? a.act + r * 3 * H : nullptr;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> g, dg;
        min_g(vload(s + H + j, n), g, dg);
        const Vec<T> z = sigmoid(vload(s + j, n));
        const Vec<T> hp = vload(hr + j, n);
        const Vec<T> diff = g - hp;
        vstore(h + j, hp + z * diff, n);
        if (!jac) return;
        T* q = jac + 3 * j;
        const Vec<T> zc = one - z;
        vstream(q, diff * z * zc, n);
        vstream(q + n, z * dg, n);
        vstream(q + 2 * n, zc, n);
      });
    }
    stream_fence();
  }

  // [dk_z | dk_h] = dh * the first two diagonals; dhr = dh (1 - z)
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* jac = a.act + r * 3 * H;
      const T* dh = a.dh + r * H;
      T* dx = a.dX + r * 2 * H;
      T* dhr = a.dhr + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        const Vec<T> d = vload(dh + j, n);
        const T* q = jac + 3 * j;
        vstore(dx + j, d * vload(q, n), n);
        vstore(dx + H + j, d * vload(q + n, n), n);
        vstore(dhr + j, d * vload(q + 2 * n, n), n);
      });
    }
  }
};

// minLSTM's normalized gates from a = -k_f, b = -k_i, finite for every a, b. With
// f = 1 / (1 + e^a), i = 1 / (1 + e^b): f' = f / (f + i) = (1 + e^b) / (2 + e^a + e^b) and
// i' = (1 + e^a) / (2 + e^a + e^b), the paper's sigmoid(-d), sigmoid(d) of
// d = softplus(a) - softplus(b). Numerators and denominator are scaled by e^-M,
// M = max(a, b, 0), so every exponent is <= 0 and one of c0 = e^-M, ca = e^(a - M),
// cb = e^(b - M) is 1: two exps, one division, D = 2 c0 + ca + cb in [1, 4]. Also returns
// pa = e^a / (2 + e^a + e^b) and pb = e^b / (...), the gates' derivatives:
// df'/da = -f' pa, df'/db = i' pb (and i' = 1 - f').
template <typename T>
inline void min_lstm_gates(const Vec<T>& a, const Vec<T>& b, Vec<T>& fp, Vec<T>& ip, Vec<T>& pa,
                           Vec<T>& pb) {
  const Vec<T> zero(T(0)), one(T(1));
  // clamp_min / clamp_max: plain max and min (at::vec::maximum also propagates NaNs)
  const Vec<T> hi = at::vec::clamp_min(a, b), lo = at::vec::clamp_max(a, b);
  const Vec<T> pos = hi > zero;                                    // M = hi, else M = 0
  const Vec<T> e_hi = hi.abs().neg().exp_u20();                    // e^-|hi|
  const Vec<T> e_lo = (lo - at::vec::clamp_min(hi, zero)).exp_u20();  // e^(lo - M)
  const Vec<T> c0 = Vec<T>::blendv(one, e_hi, pos);                // e^-M
  const Vec<T> c_hi = Vec<T>::blendv(e_hi, one, pos);              // e^(hi - M)
  const Vec<T> a_hi = a >= b;
  const Vec<T> ca = Vec<T>::blendv(e_lo, c_hi, a_hi), cb = Vec<T>::blendv(c_hi, e_lo, a_hi);
  const Vec<T> r = one / (c0 + c0 + ca + cb);
  fp = (c0 + cb) * r;
  ip = (c0 + ca) * r;
  pa = ca * r;
  pb = cb * r;
}

// minLSTM: S = [k_f | k_i | k_h] (R, 3H); h = f' hr + i' g(k_h) (gates: min_lstm_gates)
struct MinLstm {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t H, int64_t) { return 3 * H; }
  static int64_t rec(int64_t, int64_t) { return 0; }
  static int64_t saved(int64_t H, int64_t) { return 4 * H; }  // dh/d[k_f | k_i | k_h | hr]
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t, int64_t) { return 0; }

  // dh/dk_f = (hr - g) f' pa; dh/dk_i = -(hr - g) i' pb; dh/dk_h = i' g'(k_h); dh/dhr = f'
  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 3 * H;
      const T* hr = a.hr + r * H;
      T* h = a.h + r * H;
      T* jac = a.act ? a.act + r * 4 * H : nullptr;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> g, dg, fp, ip, pa, pb;
        min_g(vload(s + 2 * H + j, n), g, dg);
        min_lstm_gates(vload(s + j, n).neg(), vload(s + H + j, n).neg(), fp, ip, pa, pb);
        const Vec<T> hp = vload(hr + j, n);
        vstore(h + j, fp * hp + ip * g, n);
        if (!jac) return;
        T* q = jac + 4 * j;
        const Vec<T> diff = hp - g;
        vstream(q, diff * fp * pa, n);
        vstream(q + n, (diff * ip * pb).neg(), n);
        vstream(q + 2 * n, ip * dg, n);
        vstream(q + 3 * n, fp, n);
      });
    }
    stream_fence();
  }

  // [dk_f | dk_i | dk_h] = dh * the first three diagonals; dhr = dh f'
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* jac = a.act + r * 4 * H;
      const T* dh = a.dh + r * H;
      T* dx = a.dX + r * 3 * H;
      T* dhr = a.dhr + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        const Vec<T> d = vload(dh + j, n);
        const T* q = jac + 4 * j;
        vstore(dx + j, d * vload(q, n), n);
        vstore(dx + H + j, d * vload(q + n, n), n);
        vstore(dx + 2 * H + j, d * vload(q + 2 * n, n), n);
        vstore(dhr + j, d * vload(q + 3 * n, n), n);
      });
    }
  }
};

// LRU: state [Re h | Im h] (N = 2H), S = gamma * [B_re x | B_im x] (R, 2H),
// extra = [Re lambda | Im lambda] (2H); h = lambda hr + S in complex arithmetic
struct Lru {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t N, int64_t) { return N; }
  static int64_t rec(int64_t, int64_t) { return 0; }
  static int64_t saved(int64_t, int64_t) { return 0; }
  static int64_t out(int64_t N, int64_t) { return N; }
  static int64_t extra(int64_t N, int64_t) { return N; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N / 2;
    const T* lre = a.p;
    const T* lim = a.p + H;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 2 * H;
      const T* hr = a.hr + r * 2 * H;
      T* h = a.h + r * 2 * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        const Vec<T> ar = vload(lre + j, n), ai = vload(lim + j, n);
        const Vec<T> pr = vload(hr + j, n), pi = vload(hr + H + j, n);
        vstore(h + j, ar * pr - ai * pi + vload(s + j, n), n);
        vstore(h + H + j, ar * pi + ai * pr + vload(s + H + j, n), n);
      });
    }
  }

  // dS = dh; dhr = conj(lambda) dh; dlambda += conj(hr) dh (complex, as real pairs)
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N / 2;
    const T* lre = a.p;
    const T* lim = a.p + H;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* hr = a.hr + r * 2 * H;
      const T* dh = a.dh + r * 2 * H;
      T* dx = a.dX + r * 2 * H;
      T* dhr = a.dhr + r * 2 * H;
      std::copy(dh, dh + 2 * H, dx);
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        const Vec<T> ar = vload(lre + j, n), ai = vload(lim + j, n);
        const Vec<T> pr = vload(hr + j, n), pi = vload(hr + H + j, n);
        const Vec<T> dr = vload(dh + j, n), di = vload(dh + H + j, n);
        vstore(dhr + j, ar * dr + ai * di, n);
        vstore(dhr + H + j, ar * di - ai * dr, n);
        vstore(a.acc + j, vload(a.acc + j, n) + dr * pr + di * pi, n);
        vstore(a.acc + H + j, vload(a.acc + H + j, n) + di * pr - dr * pi, n);
      });
    }
  }
};

RNNZOO_FAMILY(mingru, MinGru)
RNNZOO_FAMILY(minlstm, MinLstm)
RNNZOO_FAMILY(lru, Lru)

}  // namespace rnnzoo_fused
