// The generic drivers: the forward and backward time loops shared by every kernel family
// (family.h), compiled once per dtype in forward.cpp and backward.cpp. Per step the input
// map and the recurrent product are dense GEMMs with W_ih and W_hh, or with a ConvShape that
// is on (row cells), ONE 1-D "same" convolution of [x_t ; h_{t-1} * mask] (conv.h), w_ih and
// w_hh being the compact kernels (Gr / W, (I / W) * k) and (Gr / W, (N / W) * k).
#pragma once

#include <vector>

#include "conv.h"
#include "family.h"

namespace rnnzoo_fused {

// a (T, B, W) sequence buffer (full), or a two-slot ring per shard (no backward needed)
template <typename T>
struct Seq {
  T* base = nullptr;   // already offset to the shard's first row
  int64_t stride = 0;  // elements between consecutive steps
  bool ring = false;
  T* at(int64_t t) const { return base + (ring ? (t & 1) : t) * stride; }
};

template <typename T>
const T* ptr_or_null(const c10::optional<Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->data_ptr<T>() : nullptr;
}

template <typename T>
const T* ptr_if(bool wanted, const Tensor& t) {
  return wanted ? t.data_ptr<T>() : nullptr;
}

// sizes of one call: T_ steps, B rows, I inputs, N state width, then the family's widths
struct Dims {
  int64_t T_, B, I, N, G, Gr, Sv, O, E;
};

template <typename T>
Dims dims_of(const Kernel<T>& k, const Tensor& x, const Tensor& h0) {
  return Dims{x.size(0), x.size(1), x.size(2), h0.size(1), k.G, k.Gr, k.Sv, k.O, k.E};
}

// forward over the whole sequence. Returns [ys (T, B, out), h_T, (c_T), saved...] with
// saved = [h sequence (T, B, N) unless y_t = h_t] + [c sequence if kStates == 2] +
// [activations (T, B, saved) if any]; with train = false nothing is saved (rolling state).
template <typename T>
std::vector<Tensor> forward_impl(const Kernel<T>& k, const Tensor& x, const Tensor& w_ih,
                                 const Tensor& b, const Tensor& w_hh, const Tensor& extra,
                                 const std::vector<Tensor>& state,
                                 const c10::optional<Tensor>& mask, bool train,
                                 const ConvShape& cs);

// backward over the whole sequence. Returns [dx (empty unless need_dx), dW_ih, db, dW_hh
// (empty without a GEMM; dW_ih and dW_hh in the kernels' shapes with a convolution), dextra
// (empty without extras), dh_0, (dc_0)]
template <typename T>
std::vector<Tensor> backward_impl(const Kernel<T>& k, const Tensor& x, const Tensor& w_ih,
                                  const Tensor& w_hh, const Tensor& extra,
                                  const std::vector<Tensor>& state,
                                  const c10::optional<Tensor>& mask, const Tensor& ys,
                                  const std::vector<Tensor>& saved,
                                  const c10::optional<Tensor>& dys,
                                  const std::vector<c10::optional<Tensor>>& dstate,
                                  bool need_dx, const ConvShape& cs);

}  // namespace rnnzoo_fused
