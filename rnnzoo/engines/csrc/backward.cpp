// The generic backward driver (see family.h): per shard of batch rows, the reverse time
// loop. Per step: the complete dL/dh_t, the family's element-wise pass (dG, dX, direct
// part of dh_{t-1}), one GEMM dG W_hh for the recurrent part of dh_{t-1}. dG and that
// step's GEMM input h_{t-1} * mask go to a per-shard chunk buffer; every g_chunk_rows rows
// ONE GEMM adds the chunk to dW_hh (and [dW_ih | db] for wide inputs) while it is still in
// cache; for tiny inputs [dW_ih | db] accumulate in a vector loop right after each step.
// With a ConvShape (conv.h: both maps are one convolution over [x_t ; h_{t-1} * mask]) the
// step runs the convolution's backward instead (dh_{t-1}, dx_t, db, and dK's share, which
// the product keeps per vector lane until the end of the time loop).
// The shards' partial gradients are summed at the end in shard order, so the result does
// not depend on the number of threads.
#include "drivers.h"
#include "input_ops.h"

namespace rnnzoo_fused {
namespace {

// the tensors of one backward call: per-shard partial gradients, results
struct BwdBuffers {
  Tensor dWhh_part, dWin_part, acc_part, dx, dh0, dc0;
};

// one shard's reverse time loop
template <typename T>
struct BwdShard {
  const Kernel<T>& k;
  const Dims& d;
  const Shards& sh;
  BwdBuffers& g;
  const T *X, *Wih, *Whh, *P, *h0, *c0, *M, *DYS, *DHT, *DCT, *HS, *CS, *AS;
  Tensor scratch;
  int64_t per_shard, K;  // K: steps per weight-gradient chunk
  bool small_in, separate_dX, need_dx;
  ConvProduct<T> conv;  // both maps when conv.cs.on()

  // dh (R, N) = dy_t (when y is h or its prefix) + [last] dh_T + [else] (mask dhr + direct)
  void assemble_dh(int64_t R, T* dh, const T* dyt, const T* dh_in, bool last, const T* dhr,
                   const T* direct, const T* mask) const {
    const T* dy_h = k.output == Output::kState ? dyt : nullptr;
    for_lanes<T>(R * d.N, [&](int64_t j, int64_t n) {
      Vec<T> v(T(0));
      if (dy_h) v = v + vload(dy_h + j, n);
      if (last) {
        if (dh_in) v = v + vload(dh_in + j, n);
      } else {
        Vec<T> rec = vload(dhr + j, n);
        if (mask) rec = rec * vload(mask + j, n);
        v = v + rec;
        if (k.direct) v = v + vload(direct + j, n);
      }
      vstore(dh + j, v, n);
    });
    if (k.output != Output::kStatePrefix || !dyt) return;
    for (int64_t r = 0; r < R; ++r) {  // y_t = h_t[:, :O]
      for_lanes<T>(d.O, [&](int64_t j, int64_t n) {
        T* p = dh + r * d.N + j;
        vstore(p, vload(p, n) + vload(dyt + r * d.O + j, n), n);
      });
    }
  }

  void operator()(int64_t s) const {
    const int64_t N = d.N, b0 = sh.begin(s), R = sh.rows(s), Rmax = sh.max_rows();
    const int64_t Ib = d.I + 1, dX_width = separate_dX ? d.G : 0;
    const bool dense = d.Gr && !conv.cs.on();  // the dense recurrent GEMM
    const bool dense_in = !conv.cs.on();        // the dense input map
    Timer timer;
    T* dh = scratch.data_ptr<T>() + s * per_shard;
    T* dhr = dh + Rmax * N;
    T* direct = dhr + Rmax * N;
    T* dc = direct + Rmax * N;
    T* hrm = dc + Rmax * N;                  // h_{t-1} * mask without a GEMM
    T* cG = hrm + Rmax * N;                  // (K, Rmax, Gr)
    T* cX = cG + K * Rmax * d.Gr;            // (K, Rmax, G) when separate
    T* cH = cX + K * Rmax * dX_width;        // (K, Rmax, N) with the dense GEMM
    T* cI = cH + K * Rmax * (dense ? N : 0);  // (K, Rmax, Ib)
    T* conv_tmp = cI + K * Rmax * Ib;
    T* dWhh = g.dWhh_part.data_ptr<T>() + s * g.dWhh_part.size(1);
    T* dWin = g.dWin_part.data_ptr<T>() + s * d.G * Ib;
    T* acc = g.acc_part.data_ptr<T>() + s * std::max<int64_t>(d.E, 1);
    const T* mask = M ? M + b0 * N : nullptr;
    const T* h_first = h0 + b0 * N;
    const T* c_first = c0 ? c0 + b0 * N : nullptr;
    auto hrow = [&](int64_t t) { return t >= 0 ? HS + (t * d.B + b0) * N : h_first; };
    auto crow = [&](int64_t t) { return t >= 0 ? CS + (t * d.B + b0) * N : c_first; };

    for (int64_t slot = 0; slot < K; ++slot) {  // the ones column of [x | 1]
      for (int64_t r = 0; r < R; ++r) cI[(slot * R + r) * Ib + d.I] = T(1);
    }
    if (k.states == 2) {
      if (DCT) {
        std::copy(DCT + b0 * N, DCT + (b0 + R) * N, dc);
      } else {
        std::fill(dc, dc + R * N, T(0));
      }
    }
    // dhr (R x N) = dG W_hh: column-major dhr^T = W^T dG^T, W^T being W's own memory
    const StepGemm<T> rec_gemm('N', dense ? N : 0, d.Gr, Whh, N, R);
    int64_t slot = 0;
    auto flush = [&]() {
      const int64_t rows = slot * R;
      if (rows == 0) return;
      if (dense) mm_tn<T>(d.Gr, N, rows, cG, d.Gr, cH, N, T(1), dWhh, N);
      if (!small_in && dense_in) {
        mm_tn<T>(d.G, Ib, rows, separate_dX ? cX : cG, d.G, cI, Ib, T(1), dWin, Ib);
      }
      slot = 0;
    };
    if (!dense_in) conv.start_backward(conv_tmp);
    timer.start();
    for (int64_t t = d.T_ - 1; t >= 0; --t) {
      const T* dyt = DYS ? DYS + (t * d.B + b0) * d.O : nullptr;
      const bool last = t == d.T_ - 1;
      assemble_dh(R, dh, dyt, (last && DHT) ? DHT + b0 * N : nullptr, last, dhr, direct, mask);
      const T* xt = X + (t * d.B + b0) * d.I;
      T* dG = cG + slot * R * d.Gr;
      T* dXt = separate_dX ? cX + slot * R * d.G : dG;
      T* dxt = need_dx ? g.dx.data_ptr<T>() + (t * d.B + b0) * d.I : nullptr;
      // h_{t-1} * mask: into the chunk (the dense GEMM input of step t); otherwise into hrm
      // when there is a mask
      const T* hp = hrow(t - 1);
      const T* hr = hp;
      T* hr_out = dense ? cH + slot * R * N : (mask ? hrm : nullptr);
      if (hr_out && mask) {
        for_lanes<T>(R * N, [&](int64_t j, int64_t n) {
          vstore(hr_out + j, vload(hp + j, n) * vload(mask + j, n), n);
        });
        hr = hr_out;
      } else if (hr_out) {
        std::copy(hp, hp + R * N, hr_out);
      }
      timer.lap(kBwdCopy);
      const bool own = k.output == Output::kOwn;
      const BwdArgs<T> a{R,   N,  d.I, dh, own ? dyt : nullptr, dc,
                         AS ? AS + (t * d.B + b0) * d.Sv : nullptr,
                         hrow(t), hp, hr,
                         k.states == 2 ? crow(t) : nullptr, k.states == 2 ? crow(t - 1) : nullptr,
                         xt,  P,  dG,  dXt, direct, dhr, own ? dxt : nullptr, acc};
      k.bwd(a);
      if (small_in && dense_in) accumulate_small_input(R, d.I, d.G, xt, dXt, dWin);
      timer.lap(kBwdElem);
      if (dense) rec_gemm.run(R, dG, d.Gr, T(0), dhr, N);
      if (!dense_in) {  // dhr, dx_t, and dK, db (G,) accumulated
        conv.backward(R, xt, d.I, hr, N, dG, d.Gr, dxt, d.I, dhr, N, dWin, conv_tmp);
      }
      if (dxt && dense_in) mm_nn<T>(R, d.I, d.G, dXt, d.G, Wih, d.I, own ? T(1) : T(0), dxt, d.I);
      timer.lap(kBwdGemm);
      if (!small_in && dense_in) {
        T* xi = cI + slot * R * Ib;
        for (int64_t r = 0; r < R; ++r) std::copy(xt + r * d.I, xt + (r + 1) * d.I, xi + r * Ib);
      }
      if (++slot == K) flush();
      timer.lap(kBwdFlush);
    }
    flush();
    if (!dense_in) conv.finish_backward(conv_tmp, dWhh);  // dK
    finish(s, dhr, direct, dc, mask);
    timer.commit();
  }

  // dh_0 = mask dhr + direct (or dh_T when T = 0); dc_0 = dc
  void finish(int64_t s, const T* dhr, const T* direct, const T* dc, const T* mask) const {
    const int64_t N = d.N, b0 = sh.begin(s), R = sh.rows(s);
    T* dh0p = g.dh0.data_ptr<T>() + b0 * N;
    if (d.T_ == 0) {
      for (int64_t j = 0; j < R * N; ++j) dh0p[j] = DHT ? DHT[b0 * N + j] : T(0);
    } else {
      for_lanes<T>(R * N, [&](int64_t j, int64_t n) {
        Vec<T> rec = vload(dhr + j, n);
        if (mask) rec = rec * vload(mask + j, n);
        if (k.direct) rec = rec + vload(direct + j, n);
        vstore(dh0p + j, rec, n);
      });
    }
    if (k.states == 2) std::copy(dc, dc + R * N, g.dc0.data_ptr<T>() + b0 * N);
  }
};

// with a convolution: the shards' dK = [dK_x | dK_h] and db (the first G of the [dW_ih | db]
// part) summed in shard order, [dK_x, db, dK_h, dextra]
template <typename T>
std::vector<Tensor> reduce_conv_shards(const Dims& d, const Shards& sh, const BwdBuffers& g,
                                       const ConvShape& cs, const at::TensorOptions& opts) {
  Tensor dK = at::empty({cs.Go, cs.rows()}, opts);
  sum_shards<T>(sh.n, dK.numel(), dK.numel(), g.dWhh_part.data_ptr<T>(), dK.data_ptr<T>());
  Tensor db = at::empty({d.G}, opts);
  sum_shards<T>(sh.n, d.G, g.dWin_part.size(1), g.dWin_part.data_ptr<T>(), db.data_ptr<T>());
  Tensor dextra = at::empty({d.E}, opts);
  sum_shards<T>(sh.n, d.E, std::max<int64_t>(d.E, 1), g.acc_part.data_ptr<T>(),
                dextra.data_ptr<T>());
  const int64_t nx = cs.rows_x();
  return {dK.narrow(1, 0, nx).contiguous(), db, dK.narrow(1, nx, cs.rows() - nx).contiguous(),
          dextra};
}

// the shards' partial weight gradients summed in shard order: [dW_ih, db, dW_hh, dextra]
template <typename T>
std::vector<Tensor> reduce_shards(const Dims& d, const Shards& sh, const BwdBuffers& g,
                                  bool small_in, const ConvShape& cs,
                                  const at::TensorOptions& opts) {
  if (cs.on()) return reduce_conv_shards<T>(d, sh, g, cs, opts);
  const int64_t Ib = d.I + 1;
  // [dW_ih | db] is laid out (I + 1, G) for tiny inputs, (G, I + 1) otherwise
  Tensor win = g.dWin_part.view({sh.n, small_in ? Ib : d.G, small_in ? d.G : Ib});
  if (small_in) win = win.transpose(1, 2);
  win = win.contiguous();  // (shards, G, I + 1)
  Tensor dWin = at::empty({d.G, Ib}, opts);
  sum_shards<T>(sh.n, d.G * Ib, d.G * Ib, win.data_ptr<T>(), dWin.data_ptr<T>());
  Tensor dW_hh = at::empty({d.Gr, d.Gr ? d.N : 0}, opts);
  sum_shards<T>(sh.n, d.Gr * d.N, d.Gr * d.N, g.dWhh_part.data_ptr<T>(), dW_hh.data_ptr<T>());
  Tensor dextra = at::empty({d.E}, opts);
  sum_shards<T>(sh.n, d.E, std::max<int64_t>(d.E, 1), g.acc_part.data_ptr<T>(),
                dextra.data_ptr<T>());
  return {dWin.narrow(1, 0, d.I).contiguous(), dWin.select(1, d.I).contiguous(), dW_hh, dextra};
}

}  // namespace

template <typename T>
std::vector<Tensor> backward_impl(const Kernel<T>& k, const Tensor& x, const Tensor& w_ih,
                                  const Tensor& w_hh, const Tensor& extra,
                                  const std::vector<Tensor>& state,
                                  const c10::optional<Tensor>& mask, const Tensor& ys,
                                  const std::vector<Tensor>& saved,
                                  const c10::optional<Tensor>& dys,
                                  const std::vector<c10::optional<Tensor>>& dstate,
                                  bool need_dx, const ConvShape& cs) {
  const Dims d = dims_of(k, x, state[0]);
  const auto opts = x.options();
  const Tensor kernel = conv_kernel(cs, w_ih, w_hh);  // [K_x | K_h] (Go, (Ci + C) * k)
  size_t next = 0;
  const Tensor hseq = k.output == Output::kState ? ys : saved.at(next++);
  const Tensor cseq = k.states == 2 ? saved.at(next++) : Tensor();
  const Tensor act = d.Sv ? saved.at(next++) : Tensor();

  const Shards sh = make_shards(d.B);
  const int64_t Rmax = sh.max_rows();
  const int64_t K = std::max<int64_t>(1, g_chunk_rows / Rmax);
  const bool small_in = d.I <= kSmallInput;
  const bool separate_dX = !k.input_in_s || d.Gr == 0;
  // per shard: dh, dhr, direct, dc, hrm, chunk dG, chunk dX, chunk hr (dense GEMM), chunk
  // [x | 1], the convolution's buffers
  const bool dense = d.Gr && !cs.on();
  const int64_t per_shard = Rmax * 5 * d.N +
                            K * Rmax * (d.Gr + (separate_dX ? d.G : 0) + (dense ? d.N : 0) +
                                        d.I + 1) +
                            ConvProduct<T>::scratch_size(cs);
  const int64_t dWhh_size = cs.on() ? cs.Go * cs.rows() : d.Gr * d.N;  // dK with a conv
  BwdBuffers g{at::zeros({sh.n, dWhh_size}, opts), at::zeros({sh.n, d.G * (d.I + 1)}, opts),
               at::zeros({sh.n, std::max<int64_t>(d.E, 1)}, opts),
               need_dx ? big_empty({d.T_, d.B, d.I}, opts) : at::empty({0}, opts),
               at::empty({d.B, d.N}, opts), at::empty({k.states == 2 ? d.B : 0, d.N}, opts)};
  BwdShard<T> shard{k, d, sh, g,
                    x.data_ptr<T>(), w_ih.data_ptr<T>(), ptr_if<T>(d.Gr > 0, w_hh),
                    ptr_if<T>(d.E > 0, extra), state[0].data_ptr<T>(),
                    ptr_if<T>(k.states == 2, state.back()), ptr_or_null<T>(mask),
                    ptr_or_null<T>(dys), ptr_or_null<T>(dstate.at(0)),
                    k.states == 2 ? ptr_or_null<T>(dstate.at(1)) : nullptr,
                    hseq.data_ptr<T>(), ptr_if<T>(k.states == 2, cseq), ptr_if<T>(d.Sv > 0, act),
                    at::empty({sh.n, per_shard}, opts), per_shard, K, small_in, separate_dX,
                    need_dx, ConvProduct<T>{cs, ptr_if<T>(cs.on(), kernel)}};
  for_shards(sh, shard);
  std::vector<Tensor> w = reduce_shards<T>(d, sh, g, small_in, cs, opts);
  std::vector<Tensor> out{g.dx, w[0], w[1], w[2], w[3], g.dh0};
  if (k.states == 2) out.push_back(g.dc0);
  return out;
}

template std::vector<Tensor> backward_impl<float>(
    const Kernel<float>&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
    const std::vector<Tensor>&, const c10::optional<Tensor>&, const Tensor&,
    const std::vector<Tensor>&, const c10::optional<Tensor>&,
    const std::vector<c10::optional<Tensor>>&, bool, const ConvShape&);
template std::vector<Tensor> backward_impl<double>(
    const Kernel<double>&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
    const std::vector<Tensor>&, const c10::optional<Tensor>&, const Tensor&,
    const std::vector<Tensor>&, const c10::optional<Tensor>&,
    const std::vector<c10::optional<Tensor>>&, bool, const ConvShape&);

}  // namespace rnnzoo_fused
