// The LMU driver: the equations, the layout and the arguments are in lmu.h.
#include "lmu.h"

#include "drivers.h"
#include "input_ops.h"

namespace rnnzoo_fused {
namespace {

// sum_j a[j] b[j]
template <typename T>
T dot(const T* a, const T* b, int64_t n) {
  Vec<T> acc(T(0));
  for_lanes<T>(n, [&](int64_t j, int64_t k) {
    acc = at::vec::fmadd(vload(a + j, k), vload(b + j, k), acc);
  });
  alignas(64) T lanes[Vec<T>::size()];
  acc.store(lanes);
  T s = 0;
  for (int64_t i = 0; i < Vec<T>::size(); ++i) s += lanes[i];
  return s;
}

// y += a x (n wide)
template <typename T>
void axpy(int64_t n, T a, const T* x, T* y) {
  const Vec<T> av(a);
  for_lanes<T>(n, [&](int64_t j, int64_t k) {
    vstore(y + j, at::vec::fmadd(av, vload(x + j, k), vload(y + j, k)), k);
  });
}

// out = a * m (n wide), or a copy of a without a mask
template <typename T>
void masked(int64_t n, const T* a, const T* m, T* out) {
  if (!m) {
    std::copy(a, a + n, out);
    return;
  }
  for_lanes<T>(n, [&](int64_t j, int64_t k) {
    vstore(out + j, vload(a + j, k) * vload(m + j, k), k);
  });
}

// sizes of one call and the constant slices of `extra`
template <typename T>
struct LmuDims {
  int64_t T_, B, I, H, D, N;
  const T *eh, *em, *bbar, *abar;

  LmuDims(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, const Tensor& extra,
          const Tensor& hm0)
      : T_(x.size(0)), B(x.size(1)), I(x.size(2)), H(w_hh.size(0)), D(hm0.size(1) - H),
        N(hm0.size(1)) {
    TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(1) == N && H > 0 && D > 0,
                "lmu: w_hh must be [W_h | W_m] (H, H + d) with the state [h | m] (B, H + d)");
    TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) == H + 1 && w_ih.size(1) == I,
                "lmu: w_ih must be [W_x ; e_x] (H + 1, I)");
    TORCH_CHECK(extra.numel() == H + 2 * D + D * D,
                "lmu: extra must be [e_h (H), e_m (d), Bbar (d), Abar (d * d)]");
    eh = extra.data_ptr<T>();
    em = eh + H;
    bbar = em + D;
    abar = bbar + D;
  }
};

// one shard's forward time loop
template <typename T>
struct LmuFwd {
  const LmuDims<T>& d;
  const Shards& sh;
  const T *X, *Wih, *WihT, *bias, *W, *hm0, *M;
  T *ys, *hT;
  Tensor scratch;
  int64_t per_shard;

  void operator()(int64_t s) const {
    const int64_t H = d.H, D = d.D, N = d.N, G = H + 1;
    const int64_t b0 = sh.begin(s), R = sh.rows(s), Rmax = sh.max_rows();
    T* Z = scratch.data_ptr<T>() + s * per_shard;  // (R, N): [hr | m_t]
    T* Xs = Z + Rmax * N;                           // (R, G): [x W_x^T + b_h | x e_x + b_u]
    const T* mask = M ? M + b0 * N : nullptr;
    const StepGemm<T> mem('T', D, D, d.abar, D, R);  // m_{t-1} Abar^T
    const StepGemm<T> hid('T', H, N, W, N, R);       // [hr | m_t] W^T
    Timer timer;
    timer.start();
    for (int64_t t = 0; t < d.T_; ++t) {
      const T* hp = t ? ys + ((t - 1) * d.B + b0) * N : hm0 + b0 * N;
      T* ht = ys + (t * d.B + b0) * N;
      input_preact<T>(R, d.I, G, X + (t * d.B + b0) * d.I, Wih, WihT, bias, Xs, G);
      timer.lap(kFwdInput);
      mem.run(R, hp + H, N, T(0), Z + H, N);
      timer.lap(kFwdGemm);
      for (int64_t r = 0; r < R; ++r) {
        const T* hpr = hp + r * N;
        T* z = Z + r * N;
        masked<T>(H, hpr, mask ? mask + r * N : nullptr, z);
        const T u = Xs[r * G + H] + dot<T>(z, d.eh, H) + dot<T>(hpr + H, d.em, D);
        axpy<T>(D, u, d.bbar, z + H);
        std::copy(z + H, z + N, ht + r * N + H);          // m_t
        std::copy(Xs + r * G, Xs + r * G + H, ht + r * N);  // the input part of h's pre-act.
      }
      timer.lap(kFwdElem);
      hid.run(R, Z, N, T(1), ht, N);
      timer.lap(kFwdGemm);
      for (int64_t r = 0; r < R; ++r) {
        T* h = ht + r * N;
        for_lanes<T>(H, [&](int64_t j, int64_t n) { vstore(h + j, vtanh(vload(h + j, n)), n); });
      }
      timer.lap(kFwdElem);
    }
    const T* last = d.T_ ? ys + ((d.T_ - 1) * d.B + b0) * N : hm0 + b0 * N;
    std::copy(last, last + R * N, hT + b0 * N);
    timer.commit();
  }
};

// per-shard partial gradients and the results of one backward call
struct LmuGrads {
  Tensor dW_part, dWin_part, acc_part, dx, dhm0;
};

// one shard's reverse time loop
template <typename T>
struct LmuBwd {
  const LmuDims<T>& d;
  const Shards& sh;
  LmuGrads& g;
  const T *X, *Wih, *W, *hm0, *M, *YS, *DYS, *DHT;
  Tensor scratch;
  int64_t per_shard, K;  // K: steps per weight-gradient chunk
  bool small_in;

  void operator()(int64_t s) const {
    const int64_t H = d.H, D = d.D, N = d.N, G = H + 1, Ib = d.I + 1;
    const int64_t b0 = sh.begin(s), R = sh.rows(s), Rmax = sh.max_rows();
    T* dh = scratch.data_ptr<T>() + s * per_shard;  // (R, H) dL/dh_t
    T* dm = dh + Rmax * H;                           // (R, D) dL/dm_t from later steps, outputs
    T* dmt = dm + Rmax * D;                          // (R, D) complete dL/dm_t
    T* dZ = dmt + Rmax * D;                          // (R, N) dP W
    T* cX = dZ + Rmax * N;                           // (K, R, G) dX = [dP | du] per step
    T* cZ = cX + K * Rmax * G;                       // (K, R, N) [hr | m_t] per step
    T* cI = cZ + K * Rmax * N;                       // (K, R, Ib) [x | 1] (wide inputs)
    T* dW = g.dW_part.data_ptr<T>() + s * H * N;
    T* dWin = g.dWin_part.data_ptr<T>() + s * G * Ib;
    T* acc = g.acc_part.data_ptr<T>() + s * (H + D);  // [de_h | de_m]
    const T* mask = M ? M + b0 * N : nullptr;
    auto rows = [&](const T* base, int64_t t) { return base + (t * d.B + b0) * N; };
    // dh, dm += dy_t (the output is the packed state)
    auto add_dy = [&](const T* dy) {
      for (int64_t r = 0; r < R; ++r) {
        axpy<T>(H, T(1), dy + r * N, dh + r * H);
        axpy<T>(D, T(1), dy + r * N + H, dm + r * D);
      }
    };
    if (!small_in) {
      for (int64_t j = 0; j < K * R; ++j) cI[j * Ib + d.I] = T(1);
    }
    std::fill(dh, dh + R * H, T(0));
    std::fill(dm, dm + R * D, T(0));
    if (DHT) add_dy(DHT + b0 * N);
    if (DYS && d.T_) add_dy(rows(DYS, d.T_ - 1));
    const StepGemm<T> hid('N', N, H, W, N, R);       // dP W
    const StepGemm<T> mem('N', D, D, d.abar, D, R);  // dmt Abar
    int64_t slot = 0;
    auto flush = [&]() {
      if (slot == 0) return;
      mm_tn<T>(H, N, slot * R, cX, G, cZ, N, T(1), dW, N);
      if (!small_in) mm_tn<T>(G, Ib, slot * R, cX, G, cI, Ib, T(1), dWin, Ib);
      slot = 0;
    };
    Timer timer;
    timer.start();
    for (int64_t t = d.T_ - 1; t >= 0; --t) {
      const T* ht = rows(YS, t);
      const T* hp = t ? rows(YS, t - 1) : hm0 + b0 * N;
      const T* xt = X + (t * d.B + b0) * d.I;
      T* dX = cX + slot * R * G;
      T* Zt = cZ + slot * R * N;
      for (int64_t r = 0; r < R; ++r) {  // dP = dh (1 - h_t^2); [hr | m_t] for dW
        const T* h = ht + r * N;
        const T* g_in = dh + r * H;
        T* dp = dX + r * G;
        const Vec<T> one(T(1));
        for_lanes<T>(H, [&](int64_t j, int64_t n) {
          const Vec<T> hv = vload(h + j, n);
          vstore(dp + j, vload(g_in + j, n) * (one - hv * hv), n);
        });
        masked<T>(H, hp + r * N, mask ? mask + r * N : nullptr, Zt + r * N);
        std::copy(h + H, h + N, Zt + r * N + H);
      }
      timer.lap(kBwdCopy);
      hid.run(R, dX, G, T(0), dZ, N);
      timer.lap(kBwdGemm);
      for (int64_t r = 0; r < R; ++r) {
        T* dmr = dmt + r * D;
        const T* dzr = dZ + r * N;
        for_lanes<T>(D, [&](int64_t j, int64_t n) {
          vstore(dmr + j, vload(dm + r * D + j, n) + vload(dzr + H + j, n), n);
        });
        const T du = dot<T>(dmr, d.bbar, D);
        dX[r * G + H] = du;
        axpy<T>(H, du, Zt + r * N, acc);            // de_h += du hr
        axpy<T>(D, du, hp + r * N + H, acc + H);    // de_m += du m_{t-1}
        T* dhr = dh + r * H;                        // dL/dh_{t-1} = (dZ_h + du e_h) mask
        std::copy(dzr, dzr + H, dhr);
        axpy<T>(H, du, d.eh, dhr);
        if (mask) {
          const T* mr = mask + r * N;
          for_lanes<T>(H, [&](int64_t j, int64_t n) {
            vstore(dhr + j, vload(dhr + j, n) * vload(mr + j, n), n);
          });
        }
      }
      timer.lap(kBwdElem);
      mem.run(R, dmt, D, T(0), dm, D);
      for (int64_t r = 0; r < R; ++r) axpy<T>(D, dX[r * G + H], d.em, dm + r * D);
      if (g.dx.defined()) {
        mm_nn<T>(R, d.I, G, dX, G, Wih, d.I, T(0), g.dx.data_ptr<T>() + (t * d.B + b0) * d.I,
                 d.I);
      }
      timer.lap(kBwdGemm);
      if (small_in) {
        accumulate_small_input<T>(R, d.I, G, xt, dX, dWin);
      } else {
        T* xi = cI + slot * R * Ib;
        for (int64_t r = 0; r < R; ++r) std::copy(xt + r * d.I, xt + (r + 1) * d.I, xi + r * Ib);
      }
      if (++slot == K) flush();
      if (t > 0 && DYS) add_dy(rows(DYS, t - 1));
      timer.lap(kBwdFlush);
    }
    flush();
    T* out = g.dhm0.data_ptr<T>() + b0 * N;
    for (int64_t r = 0; r < R; ++r) {
      std::copy(dh + r * H, dh + (r + 1) * H, out + r * N);
      std::copy(dm + r * D, dm + (r + 1) * D, out + r * N + H);
    }
    timer.commit();
  }
};

template <typename T>
std::vector<Tensor> forward_impl(const Tensor& x, const Tensor& w_ih, const Tensor& b,
                                const Tensor& w_hh, const Tensor& extra, const Tensor& hm0,
                                const c10::optional<Tensor>& mask) {
  const LmuDims<T> d(x, w_ih, w_hh, extra, hm0);
  TORCH_CHECK(b.numel() == d.H + 1, "lmu: b must be (H + 1,)");
  const auto opts = x.options();
  Tensor ys = big_empty({d.T_, d.B, d.N}, opts);
  Tensor hT = at::empty({d.B, d.N}, opts);
  Tensor w_ih_t = w_ih.t().contiguous();
  const Shards sh = make_shards(d.B);
  const int64_t per_shard = sh.max_rows() * (d.N + d.H + 1);
  LmuFwd<T> shard{d,
                  sh,
                  x.data_ptr<T>(),
                  w_ih.data_ptr<T>(),
                  w_ih_t.data_ptr<T>(),
                  b.data_ptr<T>(),
                  w_hh.data_ptr<T>(),
                  hm0.data_ptr<T>(),
                  ptr_or_null<T>(mask),
                  ys.data_ptr<T>(),
                  hT.data_ptr<T>(),
                  at::empty({sh.n, per_shard}, opts),
                  per_shard};
  for_shards(sh, shard);
  return {ys, hT};
}

template <typename T>
std::vector<Tensor> backward_impl(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh,
                                 const Tensor& extra, const Tensor& hm0,
                                 const c10::optional<Tensor>& mask, const Tensor& ys,
                                 const c10::optional<Tensor>& dys,
                                 const c10::optional<Tensor>& dhmT, bool need_dx) {
  const LmuDims<T> d(x, w_ih, w_hh, extra, hm0);
  const auto opts = x.options();
  const int64_t G = d.H + 1, Ib = d.I + 1;
  const Shards sh = make_shards(d.B);
  const int64_t Rmax = sh.max_rows();
  const int64_t K = std::max<int64_t>(1, g_chunk_rows / Rmax);
  const bool small_in = d.I <= kSmallInput;
  const int64_t per_shard =
      Rmax * (d.H + 2 * d.D + d.N) + K * Rmax * (G + d.N + (small_in ? 0 : Ib));
  LmuGrads g{at::zeros({sh.n, d.H * d.N}, opts), at::zeros({sh.n, G * Ib}, opts),
             at::zeros({sh.n, d.H + d.D}, opts),
             need_dx ? big_empty({d.T_, d.B, d.I}, opts) : Tensor(),
             at::empty({d.B, d.N}, opts)};
  LmuBwd<T> shard{d,
                  sh,
                  g,
                  x.data_ptr<T>(),
                  w_ih.data_ptr<T>(),
                  w_hh.data_ptr<T>(),
                  hm0.data_ptr<T>(),
                  ptr_or_null<T>(mask),
                  ys.data_ptr<T>(),
                  ptr_or_null<T>(dys),
                  ptr_or_null<T>(dhmT),
                  at::empty({sh.n, per_shard}, opts),
                  per_shard,
                  K,
                  small_in};
  for_shards(sh, shard);

  // partial sums in shard order; [dW_ih | db] is (I + 1, G) for tiny inputs, else (G, I + 1)
  Tensor win = g.dWin_part.view({sh.n, small_in ? Ib : G, small_in ? G : Ib});
  if (small_in) win = win.transpose(1, 2);
  win = win.contiguous();
  Tensor dWin = at::empty({G, Ib}, opts);
  sum_shards<T>(sh.n, G * Ib, G * Ib, win.data_ptr<T>(), dWin.data_ptr<T>());
  Tensor dW = at::empty({d.H, d.N}, opts);
  sum_shards<T>(sh.n, d.H * d.N, d.H * d.N, g.dW_part.data_ptr<T>(), dW.data_ptr<T>());
  Tensor dextra = at::zeros({extra.numel()}, opts);  // Abar, Bbar: constants, zero
  sum_shards<T>(sh.n, d.H + d.D, d.H + d.D, g.acc_part.data_ptr<T>(), dextra.data_ptr<T>());
  return {need_dx ? g.dx : at::empty({0}, opts),
          dWin.narrow(1, 0, d.I).contiguous(),
          dWin.select(1, d.I).contiguous(),
          dW,
          dextra,
          g.dhm0};
}

}  // namespace

std::vector<Tensor> lmu_forward(const Tensor& x, const Tensor& w_ih, const Tensor& b,
                                const Tensor& w_hh, const Tensor& extra, const Tensor& hm0,
                                const c10::optional<Tensor>& mask) {
  if (x.scalar_type() == at::kDouble) {
    return forward_impl<double>(x, w_ih, b, w_hh, extra, hm0, mask);
  }
  return forward_impl<float>(x, w_ih, b, w_hh, extra, hm0, mask);
}

std::vector<Tensor> lmu_backward(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh,
                                 const Tensor& extra, const Tensor& hm0,
                                 const c10::optional<Tensor>& mask, const Tensor& ys,
                                 const c10::optional<Tensor>& dys,
                                 const c10::optional<Tensor>& dhmT, bool need_dx) {
  if (x.scalar_type() == at::kDouble) {
    return backward_impl<double>(x, w_ih, w_hh, extra, hm0, mask, ys, dys, dhmT, need_dx);
  }
  return backward_impl<float>(x, w_ih, w_hh, extra, hm0, mask, ys, dys, dhmT, need_dx);
}

}  // namespace rnnzoo_fused
