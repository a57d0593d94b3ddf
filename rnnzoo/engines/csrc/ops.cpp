// Op registration of the fused kernels: torch.ops.rnnzoo_fused.{forward, backward,
// families, flush_denormal} (TORCH_LIBRARY, no pybind11). Python side: rnnzoo/engines/
// fused.py; build: fused_build.py (every file of this directory is a source or a
// dependency, so editing any of them rebuilds the library).
//
// Adding a kernel family (say "leaky"):
//   1. write families/leaky.h: a struct with the members family.h lists (sizes, flags and
//      the element-wise fwd/bwd templates), ending with RNNZOO_FAMILY(leaky, Leaky);
//   2. add `#include "families/leaky.h"` to families.h;
//   3. in the Python cell: fused_kernel = "leaky" and fused_params() returning its
//      w_ih (G, I), bias (G,), w_hh (Gr, N) or None, extra (E,) or None.
// tests/test_fused.py then checks it against the loop engine with every other cell.
// A cell whose input and recurrent maps are 1-D "same" convolutions over channel-major maps
// of width W (convrnn, convlstm) passes the compact kernels, w_ih (Gr / W, (I / W) * k) and
// w_hh (Gr / W, (N / W) * k), with conv_width = W: the drivers then run both maps as one
// convolution (conv.h) instead of the dense GEMMs, for any family whose input goes into S
// and whose output is its state, and return dW_ih and dW_hh in the kernels' shapes.
// A cell whose step does not fit one GEMM plus element-wise code gets a driver of its own
// (lmu.h / lmu.cpp: the LMU), listed in kOwnDrivers below with its forward and backward.
#include <torch/library.h>

#include <algorithm>
#include <sstream>

#include "drivers.h"
#include "families.h"
#include "lmu.h"

namespace rnnzoo_fused {
namespace {

// every tensor the kernels read through raw pointers must be dense (the Python side makes
// them so; this guards against a caller that does not)
void check_dense(const Tensor& t, const char* what) {
  TORCH_CHECK(!t.defined() || t.is_contiguous(), "rnnzoo fused kernels: ", what,
              " must be contiguous");
}

void check_inputs(const Tensor& x, const std::vector<Tensor>& state) {
  TORCH_CHECK(x.device().is_cpu(), "rnnzoo fused kernels run on CPU tensors only");
  TORCH_CHECK(x.dim() == 3, "x must be (T, B, I), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "rnnzoo fused kernels support float32 and float64, got ", x.scalar_type());
  TORCH_CHECK(!state.empty() && state[0].dim() == 2, "state[0] must be (B, N)");
  check_dense(x, "x");
  for (const Tensor& s : state) {
    check_dense(s, "the state");
    TORCH_CHECK(s.scalar_type() == x.scalar_type() && s.sizes() == state[0].sizes() &&
                    s.size(0) == x.size(1),
                "every state tensor must be (B, N) with x's dtype");
  }
}

// the families with a driver of their own instead of the generic ones: one state tensor,
// nothing saved but the output sequence, no convolution (lmu.h)
struct OwnDriver {
  const char* name;
  decltype(&lmu_forward) forward;
  decltype(&lmu_backward) backward;
};
const OwnDriver kOwnDrivers[] = {{"lmu", &lmu_forward, &lmu_backward}};

const OwnDriver* own_driver(const std::string& name) {
  for (const OwnDriver& d : kOwnDrivers) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

std::vector<std::string> family_names() {
  std::vector<std::string> names;
  for (const auto& kv : family_registry()) names.push_back(kv.first);
  for (const OwnDriver& d : kOwnDrivers) names.push_back(d.name);
  std::sort(names.begin(), names.end());
  return names;
}

// whether the family's output y_t is its state h_t (or a prefix of it), so that the last
// output is the final state; false for families that write their own y_t (kOwn)
bool state_output_op(const std::string& name) {
  if (own_driver(name)) return true;  // their output is their (packed) state
  const auto it = family_registry().find(name);
  TORCH_CHECK(it != family_registry().end(), "unknown fused kernel family '", name, "'");
  return it->second.f32(1, 1).output != Output::kOwn;
}

// the registered family `name`; f(kernel) with its float or double kernel for x's dtype
template <typename F>
std::vector<Tensor> with_family(const std::string& name, const Tensor& x, int64_t N,
                                const F& f) {
  const auto it = family_registry().find(name);
  if (it == family_registry().end()) {
    std::ostringstream valid;
    for (const std::string& n : family_names()) valid << " " << n;
    TORCH_CHECK(false, "unknown fused kernel family '", name, "'; valid:", valid.str());
  }
  const int64_t I = x.size(2);
  if (x.scalar_type() == at::kDouble) return f(it->second.f64(N, I));
  return f(it->second.f32(N, I));
}

// the convolution of a conv_width > 0 call (checked against the family), else none
template <typename T>
ConvShape conv_of(const Kernel<T>& k, int64_t conv_width, const Tensor& x, const Tensor& w_ih,
                  const Tensor& w_hh, int64_t N) {
  if (conv_width <= 0) return ConvShape{};
  TORCH_CHECK(k.input_in_s && k.output != Output::kOwn,
              "conv_width needs a family that adds its input into S and outputs its state");
  return conv_shape(conv_width, w_ih, w_hh, x.size(2), N, k.Gr);
}

std::vector<Tensor> forward_op(const std::string& cell, const Tensor& x, const Tensor& w_ih,
                               const Tensor& b, const Tensor& w_hh, const Tensor& extra,
                               at::TensorList state, const c10::optional<Tensor>& mask,
                               bool train, int64_t conv_width) {
  std::vector<Tensor> st(state.begin(), state.end());
  check_inputs(x, st);
  for (const Tensor* t : {&w_ih, &b, &w_hh, &extra}) check_dense(*t, "the parameters");
  if (mask.has_value()) {
    check_dense(*mask, "the mask");
    TORCH_CHECK(mask->sizes() == st[0].sizes() && mask->scalar_type() == x.scalar_type(),
                "the recurrent-dropout mask must be (B, N) with x's dtype");
  }
  if (const OwnDriver* own = own_driver(cell)) {
    TORCH_CHECK(st.size() == 1 && conv_width <= 0, "family '", cell,
                "' wants 1 state tensor and no conv_width");
    return own->forward(x, w_ih, b, w_hh, extra, st[0], mask);
  }
  return with_family(cell, x, st[0].size(1), [&](const auto& k) {
    TORCH_CHECK(int64_t(st.size()) == k.states, "family '", cell, "' wants ", k.states,
                " state tensors, got ", st.size());
    using S = typename ScalarOf<std::decay_t<decltype(k)>>::type;
    const ConvShape cs = conv_of(k, conv_width, x, w_ih, w_hh, st[0].size(1));
    return forward_impl<S>(k, x, w_ih, b, w_hh, extra, st, mask, train, cs);
  });
}

std::vector<Tensor> backward_op(const std::string& cell, const Tensor& x, const Tensor& w_ih,
                                const Tensor& w_hh, const Tensor& extra, at::TensorList state,
                                const c10::optional<Tensor>& mask, const Tensor& ys,
                                at::TensorList saved, const c10::optional<Tensor>& dys,
                                const c10::List<c10::optional<Tensor>>& dstate, bool need_dx,
                                int64_t conv_width) {
  std::vector<Tensor> st(state.begin(), state.end());
  std::vector<Tensor> sv(saved.begin(), saved.end());
  std::vector<c10::optional<Tensor>> ds;
  for (size_t i = 0; i < dstate.size(); ++i) ds.push_back(dstate.get(i));
  check_inputs(x, st);
  for (const Tensor* t : {&w_ih, &w_hh, &extra}) check_dense(*t, "the inputs");
  for (const Tensor& t : sv) check_dense(t, "the saved buffers");
  if (mask.has_value()) check_dense(*mask, "the mask");
  if (dys.has_value()) check_dense(*dys, "the output gradient");
  for (const auto& d : ds) {
    if (d.has_value()) check_dense(*d, "the final-state gradient");
  }
  if (const OwnDriver* own = own_driver(cell)) {
    TORCH_CHECK(st.size() == 1 && sv.empty() && ds.size() == 1 && conv_width <= 0, "family '",
                cell, "' wants 1 state tensor, nothing saved and no conv_width");
    return own->backward(x, w_ih, w_hh, extra, st[0], mask, ys, dys, ds[0], need_dx);
  }
  return with_family(cell, x, st[0].size(1), [&](const auto& k) {
    using S = typename ScalarOf<std::decay_t<decltype(k)>>::type;
    const ConvShape cs = conv_of(k, conv_width, x, w_ih, w_hh, st[0].size(1));
    return backward_impl<S>(k, x, w_ih, w_hh, extra, st, mask, ys, sv, dys, ds, need_dx, cs);
  });
}

// Flush denormals (FTZ/DAZ) on the calling thread AND on every thread of torch's intra-op
// pool, or restore IEEE behaviour (torch.set_flush_denormal only sets the calling thread,
// so torch's own multi-threaded kernels keep computing on denormals). Returns false where
// the CPU has no such mode.
bool flush_denormal_op(bool enable) {
  if (!set_flush_denormal_here(enable)) return false;
  const int64_t n = at::get_num_threads();
  at::parallel_for(0, n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) set_flush_denormal_here(enable);
  });
  return true;
}

}  // namespace
}  // namespace rnnzoo_fused

TORCH_LIBRARY(rnnzoo_fused, m) {
  m.def(
      "forward(str cell, Tensor x, Tensor w_ih, Tensor b, Tensor w_hh, Tensor extra, "
      "Tensor[] state, Tensor? mask, bool train, int conv_width=0) -> Tensor[]",
      &rnnzoo_fused::forward_op);
  m.def(
      "backward(str cell, Tensor x, Tensor w_ih, Tensor w_hh, Tensor extra, Tensor[] state, "
      "Tensor? mask, Tensor ys, Tensor[] saved, Tensor? dys, Tensor?[] dstate, bool need_dx, "
      "int conv_width=0) -> Tensor[]",
      &rnnzoo_fused::backward_op);
  m.def("families() -> str[]", &rnnzoo_fused::family_names);
  m.def("state_output(str cell) -> bool", &rnnzoo_fused::state_output_op);
  m.def("flush_denormal(bool enable) -> bool", &rnnzoo_fused::flush_denormal_op);
}
