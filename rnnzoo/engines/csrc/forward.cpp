// The generic forward driver (see family.h for the family interface): per shard of batch
// rows, the whole time loop; per step the input pre-activations (inline FMA loop for tiny
// inputs such as pixel MNIST's I = 1, a GEMM otherwise), ONE recurrent GEMM with the
// weight packed once per call, and the family's vectorized element-wise pass. With a
// ConvShape (row cells) both maps are ONE 1-D convolution instead (conv.h: [x_t ; h_{t-1} *
// mask] with the kernels [K_x | K_h], computed directly, S = bias + its output).
#include "drivers.h"
#include "input_ops.h"

namespace rnnzoo_fused {
namespace {

// the tensors of one forward call
template <typename T>
struct FwdBuffers {
  Tensor ys, hseq, cseq, act, hT, cT, w_ih_t;
};

template <typename T>
FwdBuffers<T> forward_buffers(const Kernel<T>& k, const Dims& d, const Tensor& w_ih,
                              const at::TensorOptions& opts, bool train) {
  FwdBuffers<T> f;
  const bool own = k.output == Output::kOwn;
  f.ys = big_empty({d.T_, d.B, own ? d.O : d.N}, opts);  // the h sequence unless kOwn
  f.hseq = own ? big_empty({train ? d.T_ : 0, d.B, d.N}, opts) : f.ys;
  f.cseq = big_empty({(k.states == 2 && train) ? d.T_ : 0, d.B, d.N}, opts);
  f.act = big_empty({train ? d.T_ : 0, d.B, d.Sv}, opts);
  f.hT = at::empty({d.B, d.N}, opts);
  f.cT = at::empty({k.states == 2 ? d.B : 0, d.N}, opts);
  f.w_ih_t = w_ih.t().contiguous();  // (I, G) for the inline input loop
  return f;
}

// one shard's whole time loop
template <typename T>
struct FwdShard {
  const Kernel<T>& k;
  const Dims& d;
  const Shards& sh;
  FwdBuffers<T>& f;
  const T *X, *Wih, *WihT, *bias, *Whh, *P, *h0, *c0, *M;
  Tensor scratch;
  int64_t per_shard, Sw;
  bool train;
  ConvProduct<T> conv;  // both maps when conv.cs.on()

  void operator()(int64_t s) const {
    const int64_t N = d.N, b0 = sh.begin(s), R = sh.rows(s), Rmax = sh.max_rows();
    Timer timer;
    // scratch: S (GEMM output, and X with kInputInS), X, hr (2 slots), h ring, c ring, act,
    // the convolution's buffers
    T* S = scratch.data_ptr<T>() + s * per_shard;
    T* Xs = S + Rmax * Sw;
    T* hr_buf = Xs + Rmax * d.G;
    T* h_ring = hr_buf + 2 * Rmax * N;
    T* c_ring = h_ring + 2 * Rmax * N;
    T* act_tmp = c_ring + 2 * Rmax * N;
    T* conv_tmp = act_tmp + Rmax * d.Sv;
    T* S_in = k.input_in_s ? S : Xs;  // where the input pre-activations go
    const int64_t ld_in = k.input_in_s ? Sw : d.G;
    const T* mask = M ? M + b0 * N : nullptr;
    const bool own = k.output == Output::kOwn;
    const int64_t yw = own ? d.O : N;

    const Seq<T> yq{f.ys.template data_ptr<T>() + b0 * yw, d.B * yw, false};
    Seq<T> hs = yq, cs{c_ring, R * N, true}, as{act_tmp, 0, false};
    if (own) hs = train ? Seq<T>{f.hseq.template data_ptr<T>() + b0 * N, d.B * N, false}
                        : Seq<T>{h_ring, R * N, true};
    if (train) {
      cs = Seq<T>{f.cseq.template data_ptr<T>() + b0 * N, d.B * N, false};
      as = Seq<T>{f.act.template data_ptr<T>() + b0 * d.Sv, d.B * d.Sv, false};
    }
    const T* h_first = h0 + b0 * N;
    const T* c_first = c0 ? c0 + b0 * N : nullptr;
    if (mask) {
      for (int64_t j = 0; j < R * N; ++j) hr_buf[j] = h_first[j] * mask[j];
    }
    // S (R x Gr) = hr W_hh^T: column-major S^T = op(W) hr^T with op = transpose (no dense
    // GEMM, m = 0, with a convolution)
    const StepGemm<T> rec_gemm('T', conv.cs.on() ? 0 : d.Gr, N, Whh, N, R);
    timer.start();
    for (int64_t t = 0; t < d.T_; ++t) {
      const T* hp = t ? hs.at(t - 1) : h_first;
      const T* cp = k.states == 2 ? (t ? cs.at(t - 1) : c_first) : nullptr;
      const T* hr = mask ? hr_buf + (t & 1) * Rmax * N : hp;
      const T* xt = X + (t * d.B + b0) * d.I;
      if (conv.cs.on()) {  // S = bias + conv([x_t ; hr]) (kInputInS)
        conv.forward(R, xt, d.I, hr, N, bias, S, d.Gr, conv_tmp);
      } else {
        input_preact<T>(R, d.I, d.G, xt, Wih, WihT, bias, S_in, ld_in);
        timer.lap(kFwdInput);
        if (d.Gr) rec_gemm.run(R, hr, N, k.input_in_s ? T(1) : T(0), S, d.Gr);
      }
      timer.lap(kFwdGemm);
      const FwdArgs<T> a{R,  N, d.I, S,        Xs, xt, hp, hr, cp, P,
                         hs.at(t), k.states == 2 ? cs.at(t) : nullptr,
                         own ? yq.at(t) : nullptr, as.at(t)};
      k.fwd(a);
      if (mask) {  // the next step's GEMM input
        T* hr_next = hr_buf + ((t + 1) & 1) * Rmax * N;
        const T* hn = hs.at(t);
        for_lanes<T>(R * N, [&](int64_t j, int64_t n) {
          vstore(hr_next + j, vload(hn + j, n) * vload(mask + j, n), n);
        });
      }
      timer.lap(kFwdElem);
    }
    const T* h_last = d.T_ ? hs.at(d.T_ - 1) : h_first;
    std::copy(h_last, h_last + R * N, f.hT.template data_ptr<T>() + b0 * N);
    if (k.states == 2) {
      const T* c_last = d.T_ ? cs.at(d.T_ - 1) : c_first;
      std::copy(c_last, c_last + R * N, f.cT.template data_ptr<T>() + b0 * N);
    }
    timer.commit();
  }
};

}  // namespace

template <typename T>
std::vector<Tensor> forward_impl(const Kernel<T>& k, const Tensor& x, const Tensor& w_ih,
                                 const Tensor& b, const Tensor& w_hh, const Tensor& extra,
                                 const std::vector<Tensor>& state,
                                 const c10::optional<Tensor>& mask, bool train,
                                 const ConvShape& cs) {
  const Dims d = dims_of(k, x, state[0]);
  FwdBuffers<T> f = forward_buffers(k, d, w_ih, x.options(), train);
  const Tensor kernel = conv_kernel(cs, w_ih, w_hh);  // [K_x | K_h] (Go, (Ci + C) * k)
  const Shards sh = make_shards(d.B);
  const int64_t Sw = k.input_in_s ? std::max(d.G, d.Gr) : d.Gr;
  const int64_t per_shard = sh.max_rows() * (Sw + d.G + 6 * d.N + d.Sv) +
                            ConvProduct<T>::scratch_size(cs);
  FwdShard<T> shard{k, d, sh, f,
                    x.data_ptr<T>(), w_ih.data_ptr<T>(), f.w_ih_t.template data_ptr<T>(),
                    b.data_ptr<T>(), ptr_if<T>(d.Gr > 0, w_hh), ptr_if<T>(d.E > 0, extra),
                    state[0].data_ptr<T>(), ptr_if<T>(k.states == 2, state.back()),
                    ptr_or_null<T>(mask), at::empty({sh.n, per_shard}, x.options()),
                    per_shard, Sw, train, ConvProduct<T>{cs, ptr_if<T>(cs.on(), kernel)}};
  for_shards(sh, shard);

  std::vector<Tensor> out{f.ys, f.hT};
  if (k.output == Output::kStatePrefix) out[0] = f.ys.narrow(2, 0, d.O);
  if (k.states == 2) out.push_back(f.cT);
  if (k.output != Output::kState) out.push_back(f.hseq);
  if (k.states == 2) out.push_back(f.cseq);
  if (d.Sv) out.push_back(f.act);
  return out;
}

template std::vector<Tensor> forward_impl<float>(const Kernel<float>&, const Tensor&,
                                                 const Tensor&, const Tensor&, const Tensor&,
                                                 const Tensor&, const std::vector<Tensor>&,
                                                 const c10::optional<Tensor>&, bool,
                                                 const ConvShape&);
template std::vector<Tensor> forward_impl<double>(const Kernel<double>&, const Tensor&,
                                                  const Tensor&, const Tensor&, const Tensor&,
                                                  const Tensor&, const std::vector<Tensor>&,
                                                  const c10::optional<Tensor>&, bool,
                                                  const ConvShape&);

}  // namespace rnnzoo_fused
