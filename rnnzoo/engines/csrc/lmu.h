// The Legendre Memory Unit's own driver (rnnzoo/cells/lmu.py), beside the generic ones.
//
// The LMU's memory m is written through a scalar u = e_x x + e_h h + e_m m (rank one), so a
// step needs only m Abar^T (d x d) and [h | m] [W_h | W_m]^T (H x (H + d)) per row:
// d^2 + H (H + d) multiply-adds, where one matrix on the packed state [h | m] (what a
// generic family could run) costs (H + d)^2 forward, as much again backward, and a
// (H + d)^2 weight gradient of which only [W_h | W_m] trains. At H = 128, d = 256: 115k
// instead of 147k per row forward, 164k instead of 295k backward.
//
// Notation: H hidden, d order, N = H + d (the packed state [h | m]), I input width. Per step,
// for the R rows of a batch shard (shards as the generic drivers: fixed ~64 rows, partial
// gradients summed in shard order, bit-identical for any thread count):
//
//   hr   = h_{t-1} * mask                        (recurrent dropout on h; m is never masked)
//   X    = b + x_t W_ih^T          (R, H + 1)     W_ih = [W_x ; e_x^T], b = [b_h ; b_u]
//   u    = X[:, H] + hr e_h + m_{t-1} e_m        (R,)
//   m_t  = m_{t-1} Abar^T + u Bbar^T             GEMM, K = d
//   h_t  = tanh(X[:, :H] + [hr | m_t] W^T)       GEMM, K = N,  W = [W_h | W_m] (H, N)
//
// Backward, reverse loop, dh and dm the complete gradients w.r.t. h_t and m_t:
//
//   dP       = dh (1 - h_t^2)                    (R, H) = dX[:, :H]
//   dZ       = dP W                              (R, N) GEMM
//   dmt      = dm + dZ[:, H:],  du = dmt Bbar    (R,)   = dX[:, H]
//   dm_{t-1} = dmt Abar + du e_m^T               GEMM   (+ dy_{t-1}[:, H:])
//   dh_{t-1} = (dZ[:, :H] + du e_h^T) * mask            (+ dy_{t-1}[:, :H])
//   dW += dP^T [hr | m_t] (chunks of steps), de_h += du^T hr, de_m += du^T m_{t-1},
//   [dW_ih | db] += dX^T [x_t | 1], dx_t = dX W_ih
//
// Arguments (the ops' forward/backward signature): w_ih (H + 1, I), b (H + 1), w_hh = W
// (H, N), extra = [e_h (H), e_m (d), Bbar (d), Abar (d * d) row-major]; state [h | m]
// (B, N); mask (B, N) of which the first H columns are read. Abar and Bbar are the cell's
// constant buffers (passed detached): their slots of the extra gradient come back zero.
// Outputs as a generic family with Output::kState: ys = the packed state sequence.
#pragma once

#include <vector>

#include "runtime.h"

namespace rnnzoo_fused {

// forward over the sequence (float32 or float64, x's dtype): [ys (T, B, N), [h_T | m_T]
// (B, N)]; ys is also what backward reads (nothing else is saved)
std::vector<Tensor> lmu_forward(const Tensor& x, const Tensor& w_ih, const Tensor& b,
                                const Tensor& w_hh, const Tensor& extra, const Tensor& hm0,
                                const c10::optional<Tensor>& mask);

// backward: [dx (empty unless need_dx), dW_ih, db, dW_hh, dextra, d[h_0 | m_0]]
std::vector<Tensor> lmu_backward(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh,
                                 const Tensor& extra, const Tensor& hm0,
                                 const c10::optional<Tensor>& mask, const Tensor& ys,
                                 const c10::optional<Tensor>& dys,
                                 const c10::optional<Tensor>& dhmT, bool need_dx);

}  // namespace rnnzoo_fused
