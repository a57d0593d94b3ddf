// Kernel families of the element-wise linear recurrences h_t = a_t * (h_{t-1} * mask) + b_t:
// minGRU, minLSTM (rnnzoo/cells/mingru.py, minlstm.py) and the LRU (rnnzoo/cells/lru.py).
// The interface is documented in ../family.h; the equations in the cells' module docstrings.
// No GEMM (rec = 0): the whole step is element-wise, like IndRNN's, so the kernels are
// memory-bound. Each family returns the state sequence (Output::kState); the cells' output
// maps (LRU's Re(C h) + D x, the optional GLU block) run in Python, batched over time.
// The gated families keep their input pre-activations (saved = G) and recompute the gates in
// backward: fewer bytes than storing gates and their derivatives.
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

// softplus(v) = max(v, 0) + log1p(exp(-|v|))
template <typename T>
inline Vec<T> softplus(const Vec<T>& v) {
  return at::vec::maximum(v, Vec<T>(T(0))) + v.abs().neg().exp().log1p();
}

// minGRU: S = [k_z | k_h] (R, 2H); z = sigmoid(k_z), h = (1 - z) hr + z g(k_h)
struct MinGru {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t H, int64_t) { return 2 * H; }
  static int64_t rec(int64_t, int64_t) { return 0; }
  static int64_t saved(int64_t H, int64_t) { return 2 * H; }  // k_z, k_h
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t, int64_t) { return 0; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 2 * H;
      const T* hr = a.hr + r * H;
      T* h = a.h + r * H;
      if (a.act) std::copy(s, s + 2 * H, a.act + r * 2 * H);
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> g, dg;
        min_g(vload(s + H + j, n), g, dg);
        const Vec<T> z = sigmoid(vload(s + j, n));
        const Vec<T> hp = vload(hr + j, n);
        vstore(h + j, hp + z * (g - hp), n);
      });
    }
  }

  // dhr = dh (1 - z); dk_z = dh (g - hr) z (1 - z); dk_h = dh z g'(k_h)
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N;
    const Vec<T> one(T(1));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* k = a.act + r * 2 * H;
      const T* hr = a.hr + r * H;
      const T* dh = a.dh + r * H;
      T* dx = a.dX + r * 2 * H;
      T* dhr = a.dhr + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> g, dg;
        min_g(vload(k + H + j, n), g, dg);
        const Vec<T> z = sigmoid(vload(k + j, n));
        const Vec<T> d = vload(dh + j, n);
        vstore(dhr + j, d * (one - z), n);
        vstore(dx + j, d * (g - vload(hr + j, n)) * z * (one - z), n);
        vstore(dx + H + j, d * z * dg, n);
      });
    }
  }
};

// minLSTM: S = [k_f | k_i | k_h] (R, 3H); d = softplus(-k_f) - softplus(-k_i) = log i - log f,
// f' = sigmoid(-d), i' = sigmoid(d), h = f' hr + i' g(k_h)
struct MinLstm {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr Output kOutput = Output::kState;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t H, int64_t) { return 3 * H; }
  static int64_t rec(int64_t, int64_t) { return 0; }
  static int64_t saved(int64_t H, int64_t) { return 3 * H; }  // k_f, k_i, k_h
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t, int64_t) { return 0; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.N;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 3 * H;
      const T* hr = a.hr + r * H;
      T* h = a.h + r * H;
      if (a.act) std::copy(s, s + 3 * H, a.act + r * 3 * H);
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> g, dg;
        min_g(vload(s + 2 * H + j, n), g, dg);
        const Vec<T> d = softplus(vload(s + j, n).neg()) - softplus(vload(s + H + j, n).neg());
        vstore(h + j, sigmoid(d.neg()) * vload(hr + j, n) + sigmoid(d) * g, n);
      });
    }
  }

  // df' = dh (hr - g) (i' = 1 - f'); dd = -df' f' i'; dk_f = dd (f - 1); dk_i = dd (1 - i);
  // dk_h = dh i' g'(k_h); dhr = dh f'
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.N;
    const Vec<T> one(T(1));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* k = a.act + r * 3 * H;
      const T* hr = a.hr + r * H;
      const T* dh = a.dh + r * H;
      T* dx = a.dX + r * 3 * H;
      T* dhr = a.dhr + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> g, dg;
        min_g(vload(k + 2 * H + j, n), g, dg);
        const Vec<T> kf = vload(k + j, n), ki = vload(k + H + j, n);
        const Vec<T> d = softplus(kf.neg()) - softplus(ki.neg());
        const Vec<T> fp = sigmoid(d.neg()), ip = sigmoid(d);
        const Vec<T> dhv = vload(dh + j, n);
        const Vec<T> dd = (dhv * (vload(hr + j, n) - g) * fp * ip).neg();
        vstore(dhr + j, dhv * fp, n);
        vstore(dx + j, dd * (sigmoid(kf) - one), n);
        vstore(dx + H + j, dd * (one - sigmoid(ki)), n);
        vstore(dx + 2 * H + j, dhv * ip * dg, n);
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
