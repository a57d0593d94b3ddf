// Benchmark-only ops: torch.ops.rnnzoo_fused.{gemm_only, profile, config}. The GEMM-only
// floor of rnnzoo/bench/floor.py, the per-phase profile of the drivers, and the tuning knobs
// (for measurements and tests). Training never calls them.
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
}
