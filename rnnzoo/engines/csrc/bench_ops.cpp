// Benchmark- and test-only ops: torch.ops.rnnzoo_fused.{gemm_only, profile, config,
// conv_product, conv_product_backward}. The GEMM-only floor of rnnzoo/bench/floor.py, the
// per-phase profile of the drivers, the tuning knobs (for measurements and tests), and the
// drivers' convolution product (conv.h) alone, for its tests against F.conv1d. Training never
// calls them.
#include "conv.h"
#include "runtime.h"

#include <torch/library.h>

namespace rnnzoo_fused {
namespace {

// The recurrent GEMMs of one layer alone, sharded like the kernels: the benchmark's
// "GEMM-only" floor. Forward: S = h_{t-1} W^T per step; backward: dh_{t-1} = dG_t W per
// step and dW += dG^T h over chunks of g_chunk_rows rows (operands prepared once).
template <typename T>
void gemm_only_impl(const Tensor& h, const Tensor& w, const Tensor& dg, bool backward) {
  const int64_t T_ = h.size(0), B = h.size(1), H = h.size(2), G = w.size(0);
  const Shards sh = make_shards(B);
  const int64_t Rmax = sh.max_rows();
  const int64_t K = std::max<int64_t>(1, g_chunk_rows / Rmax);
  const int64_t per_shard = Rmax * (G + H) + K * Rmax * (G + H) + G * H;
  Tensor scratch = at::zeros({sh.n, per_shard}, h.options());
  const T* HS = h.data_ptr<T>();
  const T* W = w.data_ptr<T>();
  const T* DG = dg.data_ptr<T>();
  for_shards(sh, [&](int64_t s) {
    const int64_t b0 = sh.begin(s), R = sh.rows(s);
    T* S = scratch.data_ptr<T>() + s * per_shard;
    T* dh = S + Rmax * G;
    T* cG = dh + Rmax * H;
    T* cH = cG + K * Rmax * G;
    T* dW = cH + K * Rmax * H;
    if (!backward) {
      const StepGemm<T> fwd('T', G, H, W, H, R);
      for (int64_t t = 0; t < T_; ++t) fwd.run(R, HS + (t * B + b0) * H, H, T(0), S, G);
      return;
    }
    const StepGemm<T> bwd('N', H, G, W, H, R);
    int64_t slot = 0;
    for (int64_t t = T_ - 1; t >= 0; --t) {
      bwd.run(R, DG + (t * B + b0) * G, G, T(0), dh, H);
      if (++slot == K || t == 0) {
        mm_tn<T>(G, H, slot * R, cG, G, cH, H, T(1), dW, H);
        slot = 0;
      }
    }
  });
}

void gemm_only_op(const Tensor& h, const Tensor& w, const Tensor& dg, bool backward) {
  TORCH_CHECK(h.device().is_cpu() && h.dim() == 3 && w.dim() == 2 && dg.dim() == 3,
              "gemm_only wants CPU h (T, B, H), w (G, H), dg (T, B, G)");
  if (h.scalar_type() == at::kDouble) {
    gemm_only_impl<double>(h, w, dg, backward);
  } else {
    gemm_only_impl<float>(h, w, dg, backward);
  }
}

// conv.h's product over all B rows at once: S (B, Go*W) = conv([x ; h]) for x (B, Ci*W), h
// (B, C*W) and the kernel (Go, (Ci + C)*k)
template <typename T>
Tensor conv_product_impl(const ConvShape& cs, const Tensor& x, const Tensor& h,
                         const Tensor& kernel) {
  const int64_t B = h.size(0);
  Tensor S = at::zeros({B, cs.Go * cs.W}, h.options());
  Tensor scratch = at::empty({ConvProduct<T>::scratch_size(cs)}, h.options());
  const ConvProduct<T> conv{cs, kernel.data_ptr<T>()};
  conv.forward(B, x.data_ptr<T>(), x.size(1), h.data_ptr<T>(), h.size(1), nullptr,
               S.data_ptr<T>(), S.size(1), scratch.data_ptr<T>());
  return S;
}

// its backward for dS (B, Go*W): [dx (B, Ci*W) (empty unless need_dx), dh (B, C*W), dkernel,
// dbias (Go*W): the gradient of a bias added to S]
template <typename T>
std::vector<Tensor> conv_backward_impl(const ConvShape& cs, const Tensor& x, const Tensor& h,
                                       const Tensor& kernel, const Tensor& dS, bool need_dx) {
  const int64_t B = h.size(0);
  Tensor dx = at::empty({need_dx ? B : 0, x.size(1)}, h.options());
  Tensor dh = at::empty(h.sizes(), h.options()), dK = at::zeros(kernel.sizes(), h.options());
  Tensor db = at::zeros({cs.Go * cs.W}, h.options());
  Tensor scratch = at::empty({ConvProduct<T>::scratch_size(cs)}, h.options());
  const ConvProduct<T> conv{cs, kernel.data_ptr<T>()};
  conv.start_backward(scratch.data_ptr<T>());
  conv.backward(B, x.data_ptr<T>(), x.size(1), h.data_ptr<T>(), h.size(1), dS.data_ptr<T>(),
                dS.size(1), need_dx ? dx.data_ptr<T>() : nullptr, x.size(1), dh.data_ptr<T>(),
                dh.size(1), db.data_ptr<T>(), scratch.data_ptr<T>());
  conv.finish_backward(scratch.data_ptr<T>(), dK.data_ptr<T>());
  return {dx, dh, dK, db};
}

// the shape of a conv_product call: x (B, Ci*W), h (B, C*W), kernel (Go, (Ci + C)*k)
ConvShape conv_args(const Tensor& x, const Tensor& h, const Tensor& kernel, int64_t width) {
  for (const Tensor* t : {&x, &h, &kernel}) {
    TORCH_CHECK(t->device().is_cpu() && t->dim() == 2 && t->is_contiguous() &&
                    t->scalar_type() == h.scalar_type() &&
                    (h.scalar_type() == at::kFloat || h.scalar_type() == at::kDouble),
                "conv_product wants contiguous 2-D CPU float x, h and kernel of one dtype");
  }
  TORCH_CHECK(width > 0 && x.size(0) == h.size(0) && x.size(1) % width == 0 &&
                  h.size(1) % width == 0 && h.size(1) > 0,
              "conv_product wants x (B, Ci*W), h (B, C*W) with C > 0, width W > 0");
  const int64_t Ci = x.size(1) / width, C = h.size(1) / width;
  TORCH_CHECK(kernel.size(1) % (Ci + C) == 0, "conv_product: the kernel must be (Go, (",
              Ci, " + ", C, ") * k), got ", kernel.sizes());
  const int64_t k = kernel.size(1) / (Ci + C);
  return ConvShape{width, Ci, C, k, kernel.size(0)};
}

Tensor conv_product_op(const Tensor& x, const Tensor& h, const Tensor& kernel, int64_t width) {
  const ConvShape cs = conv_args(x, h, kernel, width);
  if (h.scalar_type() == at::kDouble) return conv_product_impl<double>(cs, x, h, kernel);
  return conv_product_impl<float>(cs, x, h, kernel);
}

std::vector<Tensor> conv_product_backward_op(const Tensor& x, const Tensor& h,
                                             const Tensor& kernel, const Tensor& dS,
                                             int64_t width, bool need_dx) {
  const ConvShape cs = conv_args(x, h, kernel, width);
  TORCH_CHECK(dS.is_contiguous() && dS.scalar_type() == h.scalar_type() &&
                  dS.sizes() == at::IntArrayRef({h.size(0), cs.Go * width}),
              "conv_product_backward wants dS (B, Go*W) like the product's output");
  if (h.scalar_type() == at::kDouble) {
    return conv_backward_impl<double>(cs, x, h, kernel, dS, need_dx);
  }
  return conv_backward_impl<float>(cs, x, h, kernel, dS, need_dx);
}

// timings per phase since the last call (seconds summed over shards); enables profiling
std::vector<double> profile_op(bool enable) {
  std::lock_guard<std::mutex> lock(g_times_mutex);
  std::vector<double> out(g_times.begin(), g_times.end());
  g_times.fill(0.0);
  g_profile = enable;
  return out;
}

// tuning knobs: chunk rows of the weight-gradient GEMM, batch rows per shard, packed GEMM
// (a value <= 0, or < 0 for packed, keeps the current setting); returns the settings
std::vector<int64_t> config_op(int64_t chunk_rows, int64_t shard_rows, int64_t packed) {
  if (chunk_rows > 0) g_chunk_rows = chunk_rows;
  if (shard_rows > 0) g_shard_rows = shard_rows;
  if (packed >= 0) g_use_packed = packed != 0;
  return {g_chunk_rows, g_shard_rows, g_use_packed ? 1 : 0};
}

}  // namespace
}  // namespace rnnzoo_fused

TORCH_LIBRARY_FRAGMENT(rnnzoo_fused, m) {
  m.def("gemm_only(Tensor h, Tensor w, Tensor dg, bool backward) -> ()",
        &rnnzoo_fused::gemm_only_op);
  m.def("profile(bool enable) -> float[]", &rnnzoo_fused::profile_op);
  m.def("config(int chunk_rows, int shard_rows, int packed) -> int[]",
        &rnnzoo_fused::config_op);
  m.def("conv_product(Tensor x, Tensor h, Tensor kernel, int width) -> Tensor",
        &rnnzoo_fused::conv_product_op);
  m.def(
      "conv_product_backward(Tensor x, Tensor h, Tensor kernel, Tensor dS, int width, "
      "bool need_dx) -> Tensor[]",
      &rnnzoo_fused::conv_product_backward_op);
}
