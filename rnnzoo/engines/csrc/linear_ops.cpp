// torch.ops.rnnzoo_fused.weight_grad: the weight and bias gradients of a linear layer,
// dW = dy^T x and db = sum_r dy[r], with a summation order that does not depend on the
// number of threads. BLAS splits a GEMM's inner dimension (here the rows) across threads
// differently for 1 and 2 threads, so torch's own backward of nn.Linear is not
// bit-reproducible across thread counts; the model's readout and input maps use this op
// (rnnzoo/engines/stable_linear.py). Rows go in fixed chunks (from R alone), each chunk is
// one single-threaded GEMM, and the chunks' partial sums are added in chunk order.
#include <torch/library.h>

#include "runtime.h"

namespace rnnzoo_fused {
namespace {

constexpr int64_t kWeightGradChunk = 1024;  // rows per chunk

template <typename T>
std::vector<Tensor> weight_grad_impl(const Tensor& dy, const Tensor& x) {
  const int64_t R = dy.size(0), G = dy.size(1), I = x.size(1);
  const int64_t chunks = std::max<int64_t>(1, (R + kWeightGradChunk - 1) / kWeightGradChunk);
  // per chunk: [dW (G, I) | db (G)] as one (G, I + 1) block, from [x | 1]
  Tensor part = at::zeros({chunks, G * (I + 1)}, dy.options());
  Tensor xo = at::empty({std::min(R, kWeightGradChunk) * chunks, I + 1}, dy.options());
  const T* DY = dy.data_ptr<T>();
  const T* X = x.data_ptr<T>();
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    SingleThreadBlas one_thread;
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r0 = c * kWeightGradChunk, rows = std::min(R - r0, kWeightGradChunk);
      T* xc = xo.data_ptr<T>() + c * kWeightGradChunk * (I + 1);
      for (int64_t r = 0; r < rows; ++r) {
        std::copy(X + (r0 + r) * I, X + (r0 + r + 1) * I, xc + r * (I + 1));
        xc[r * (I + 1) + I] = T(1);
      }
      // (G, I + 1) = dy_c^T (G x rows) [x_c | 1] (rows x I + 1)
      mm_tn<T>(G, I + 1, rows, DY + r0 * G, G, xc, I + 1, T(0),
               part.data_ptr<T>() + c * G * (I + 1), I + 1);
    }
  });
  Tensor total = part.select(0, 0).clone();
  T* out = total.data_ptr<T>();
  for (int64_t c = 1; c < chunks; ++c) {
    const T* p = part.data_ptr<T>() + c * G * (I + 1);
    for (int64_t e = 0; e < G * (I + 1); ++e) out[e] += p[e];
  }
  Tensor block = total.view({G, I + 1});
  return {block.narrow(1, 0, I).contiguous(), block.select(1, I).contiguous()};
}

// dy (R, G), x (R, I), both contiguous CPU float32/float64 -> [dW (G, I), db (G,)]
std::vector<Tensor> weight_grad_op(const Tensor& dy, const Tensor& x) {
  TORCH_CHECK(dy.device().is_cpu() && dy.dim() == 2 && x.dim() == 2 &&
                  dy.size(0) == x.size(0) && dy.scalar_type() == x.scalar_type(),
              "weight_grad wants CPU dy (R, G) and x (R, I) of one dtype");
  const Tensor dyc = dy.contiguous(), xc = x.contiguous();
  if (dy.scalar_type() == at::kDouble) return weight_grad_impl<double>(dyc, xc);
  TORCH_CHECK(dy.scalar_type() == at::kFloat, "weight_grad supports float32 and float64");
  return weight_grad_impl<float>(dyc, xc);
}

}  // namespace
}  // namespace rnnzoo_fused

TORCH_LIBRARY_FRAGMENT(rnnzoo_fused, m) {
  m.def("weight_grad(Tensor dy, Tensor x) -> Tensor[]", &rnnzoo_fused::weight_grad_op);
}
