// The second kind of product of the generic drivers: 1-D "same" convolutions over the width
// of channel-major maps (the row cells convrnn and convlstm), instead of dense GEMMs with
// their banded (Toeplitz) matrices, which spend W / k times more multiply-adds (28 / 5 =
// 5.6x on the row view). Both maps of a step run as ONE convolution over the Ci + C channels
// [x_t ; h_{t-1} * mask], whose output lands in S in the layout the dense GEMMs would write,
// so the element-wise families run unchanged.
//
// Layout: x_t (R, Ci*W) and h (R, C*W), h[r, c*W + w]; the kernel K (Go, (Ci + C)*k) = [K_x |
// K_h], K_h[o, c*k + j] (torch's Conv1d weight (Go, C, k) flattened); the output S (R, Go*W),
// S[r, o*W + w] = sum_{c, j} K[o, c*k + j] z[r, c, w + j - p] with z = [x_t ; h], p = (k - 1)
// / 2 and zeros outside [0, W) (torch's padding="same"). Per step, for the R rows of a shard:
//
//   im2col   col ((Ci + C)*k, R*W),  col[c*k + j, r*W + w] = z[r, c, w + j - p]
//   GEMM     Y (Go, R*W) = K col                           (M = Go, N = R*W, K = (Ci + C)*k)
//   scatter  S[r, o*W + w] = bias[o*W + w] + Y[o, r*W + w]
//
// and in backward, with dS = dL/dS (R, Go*W):
//
//   gather   dY[o, r*W + w] = dS[r, o*W + w], and db[o*W + w] += dS[r, o*W + w]
//   GEMM     dcol = K^T dY, then col2im: dz[r, c, w + j - p] += dcol[c*k + j, r*W + w] (only
//            the h rows when dx is not needed)
//   GEMM     dK (Go, (Ci + C)*k) += dY col^T  (col: im2col of the step's x_t and h_{t-1} * mask)
//
// Every function works on caller-owned buffers (the drivers' per-shard scratch), so the
// shards stay independent and the sums keep their order for any thread count.
#pragma once

#include <ATen/ops/cat.h>

#include "runtime.h"

namespace rnnzoo_fused {

// sizes of the convolution; W == 0 means "no convolution: the dense GEMMs"
struct ConvShape {
  int64_t W = 0, Ci = 0, C = 0, k = 0, Go = 0;
  bool on() const { return W > 0; }
  int64_t rows_x() const { return Ci * k; }        // im2col rows of x_t
  int64_t rows() const { return (Ci + C) * k; }    // all im2col rows: the GEMM's K
  int64_t left() const { return (k - 1) / 2; }
};

// the convolutions of width-`width` maps read off the compact kernels w_ih (Go, Ci*k) and
// w_hh (Go, C*k), the input width I, state width N and the family's GEMM output width Gr;
// checks that they agree
inline ConvShape conv_shape(int64_t width, const Tensor& w_ih, const Tensor& w_hh, int64_t I,
                            int64_t N, int64_t Gr) {
  if (width <= 0) return ConvShape{};
  TORCH_CHECK(Gr > 0, "conv_width needs a family with a recurrent product");
  TORCH_CHECK(N % width == 0 && Gr % width == 0 && I % width == 0, "conv_width ", width,
              " must divide the input width ", I, ", the state width ", N,
              " and the recurrent output width ", Gr);
  const int64_t Ci = I / width, C = N / width, Go = Gr / width;
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) == Go && w_hh.size(1) % C == 0 &&
                  w_hh.size(1) >= C,
              "with conv_width ", width, " w_hh must be the kernel (", Go, ", ", C,
              " * k), got ", w_hh.sizes());
  const int64_t k = w_hh.size(1) / C;
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) == Go && w_ih.size(1) == Ci * k, "with conv_width ",
              width, " w_ih must be the kernel (", Go, ", ", Ci, " * ", k, "), got ",
              w_ih.sizes());
  return ConvShape{width, Ci, C, k, Go};
}

// the kernels side by side, [K_x | K_h] (Go, (Ci + C)*k), or an empty tensor without cs
inline Tensor conv_kernel(const ConvShape& cs, const Tensor& w_ih, const Tensor& w_hh) {
  return cs.on() ? at::cat({w_ih, w_hh}, 1) : Tensor();
}

// The rearrangements below copy rows of W (28 on the row view) elements: plain loops the
// compiler vectorizes, not std::copy / std::fill, whose library calls per 28-element row
// cost more than the copies themselves (measured: im2col took longer than its GEMM). The
// compilers turn such loops back into memmove / memset calls (GCC's loop distribution,
// clang's loop idioms; perf showed memmove at ~10% of a convrnn kernel run), so these
// functions are compiled without that transformation.
#if defined(__clang__)
#define RNNZOO_PLAIN_LOOPS __attribute__((no_builtin("memcpy", "memmove", "memset")))
#elif defined(__GNUC__)
#define RNNZOO_PLAIN_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define RNNZOO_PLAIN_LOOPS
#endif

// dst[0, W) = src[w + s] where 0 <= w + s < W, else 0 (src: one map's row)
template <typename T>
RNNZOO_PLAIN_LOOPS
inline void shifted_row(int64_t W, int64_t s, const T* __restrict src, T* __restrict dst) {
  const int64_t lo = std::clamp<int64_t>(-s, 0, W), hi = std::clamp<int64_t>(W - s, lo, W);
  for (int64_t w = 0; w < lo; ++w) dst[w] = T(0);
  const T* in = src + (lo + s);  // in[0] = src[lo + s], the first one in range
  for (int64_t w = lo; w < hi; ++w) dst[w] = in[w - lo];
  for (int64_t w = hi; w < W; ++w) dst[w] = T(0);
}

// dst[w + s] += src[w] where 0 <= w + s < W (the transpose of shifted_row)
template <typename T>
RNNZOO_PLAIN_LOOPS
inline void add_shifted_row(int64_t W, int64_t s, const T* __restrict src, T* __restrict dst) {
  const int64_t lo = std::clamp<int64_t>(-s, 0, W), hi = std::clamp<int64_t>(W - s, lo, W);
  T* out = dst + (lo + s);
  for (int64_t w = lo; w < hi; ++w) out[w - lo] += src[w];
}

// rows [c*k + j] of col (ld ldc) for the `n` maps of z (R, n*W), ld ldz:
// col[c*k + j, r*W + w] = z[r, c*W + w + j - p]
template <typename T>
RNNZOO_PLAIN_LOOPS
void im2col(const ConvShape& cs, int64_t n, int64_t R, const T* z, int64_t ldz, T* col,
            int64_t ldc) {
  const int64_t W = cs.W;
  for (int64_t c = 0; c < n; ++c) {
    for (int64_t j = 0; j < cs.k; ++j) {
      T* dst = col + (c * cs.k + j) * ldc;
      for (int64_t r = 0; r < R; ++r) {
        shifted_row(W, j - cs.left(), z + r * ldz + c * W, dst + r * W);
      }
    }
  }
}

// dz (R, n*W), ld lddz, = col2im of `n` maps' rows of dcol (ld ldc):
// dz[r, c*W + v] = sum over j of dcol[c*k + j, r*W + v - j + p]. dcol is read in order (row
// by row; dz is small and stays in cache).
template <typename T>
RNNZOO_PLAIN_LOOPS
void col2im(const ConvShape& cs, int64_t n, int64_t R, const T* dcol, int64_t ldc, T* dz,
            int64_t lddz) {
  const int64_t W = cs.W;
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t i = 0; i < n * W; ++i) dz[r * lddz + i] = T(0);
  }
  for (int64_t c = 0; c < n; ++c) {
    for (int64_t j = 0; j < cs.k; ++j) {
      const T* src = dcol + (c * cs.k + j) * ldc;
      for (int64_t r = 0; r < R; ++r) {
        add_shifted_row(W, j - cs.left(), src + r * W, dz + r * lddz + c * W);
      }
    }
  }
}

// S (R, ldS) = bias + Y (Go, R*W) rearranged: S[r, o*W + w] = bias[o*W + w] + Y[o, r*W + w];
// with a null bias S += Y rearranged
template <typename T>
RNNZOO_PLAIN_LOOPS
void scatter(const ConvShape& cs, int64_t R, const T* Y, const T* bias, T* S, int64_t ldS) {
  const int64_t W = cs.W, RW = R * W;
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t o = 0; o < cs.Go; ++o) {
      T* __restrict dst = S + r * ldS + o * W;
      const T* __restrict src = Y + o * RW + r * W;
      if (bias) {
        const T* __restrict b = bias + o * W;
        for (int64_t w = 0; w < W; ++w) dst[w] = b[w] + src[w];
      } else {
        for (int64_t w = 0; w < W; ++w) dst[w] += src[w];
      }
    }
  }
}

// dY (Go, R*W) = dS (R, ldS) rearranged, dY[o, r*W + w] = dS[r, o*W + w], and db (Go*W) +=
// the rows of dS (the bias gradient, in the same pass)
template <typename T>
RNNZOO_PLAIN_LOOPS
void gather(const ConvShape& cs, int64_t R, const T* dS, int64_t ldS, T* dY, T* db) {
  const int64_t W = cs.W, RW = R * W;
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t o = 0; o < cs.Go; ++o) {
      const T* __restrict src = dS + r * ldS + o * W;
      T* __restrict dst = dY + o * RW + r * W;
      T* __restrict acc = db + o * W;
      for (int64_t w = 0; w < W; ++w) {
        dst[w] = src[w];
        acc[w] += src[w];
      }
    }
  }
}

// batch rows per block of the convolution product: one block's im2col buffer stays in L2
// (see ConvProduct). Measured with scripts/benchmark.py (loop and fused interleaved, 2
// threads, no other job; the host's noise moves the milliseconds by +-30%, so ratios):
// loop / fused for convrnn 2.45-2.69 (mean 2.53, 6 runs) with 16-row blocks vs 2.08-2.43
// (mean 2.24, 5 runs) with whole 64-row shards; convlstm 3.22 vs 3.20 (means). Fused alone,
// and on one thread beside another job, the difference was within the noise.
inline int64_t g_conv_block_rows = 16;

// One step's convolution for a shard, block by block of g_conv_block_rows batch rows (the
// im2col of a whole 64-row shard, 85 rows x 1792 columns, is 610 KB: more than this machine's
// 512 KB L2, so the GEMM read it back from L3), on its scratch (scratch_size elements): col
// (rows(), Rb*W), Y / dY (Go, Rb*W), dcol (rows(), Rb*W). The blocks are fixed by the shard's
// rows, so every sum keeps its order.
template <typename T>
struct ConvProduct {
  ConvShape cs;
  const T* K;  // (Go, rows()) = [K_x | K_h]
  int64_t block = g_conv_block_rows;

  static int64_t scratch_size(const ConvShape& cs) {
    return cs.on() ? g_conv_block_rows * cs.W * (2 * cs.rows() + cs.Go) : 0;
  }

  // S (R, ldS) = bias + conv([x ; h]) (S += conv(...) with a null bias): x (R, Ci*W), h (R,
  // C*W) with leading dimensions ldx, ldh, bias (Go*W)
  void forward(int64_t R, const T* x, int64_t ldx, const T* h, int64_t ldh, const T* bias, T* S,
               int64_t ldS, T* scratch) const {
    for (int64_t r0 = 0; r0 < R; r0 += block) {
      const int64_t Rb = std::min(block, R - r0), RW = Rb * cs.W;
      T* col = scratch;
      T* Y = col + RW * cs.rows();
      im2col(cs, cs.Ci, Rb, x + r0 * ldx, ldx, col, RW);
      im2col(cs, cs.C, Rb, h + r0 * ldh, ldh, col + cs.rows_x() * RW, RW);
      mm_nn<T>(cs.Go, RW, cs.rows(), K, cs.rows(), col, RW, T(0), Y, RW);
      scatter(cs, Rb, Y, bias, S + r0 * ldS, ldS);
    }
  }

  // the gradients of sum(dS * (bias + conv([x ; h]))): dh (R, lddh) and, unless dx is null,
  // dx (R, lddx); dK (Go, rows()) and db (Go*W) += those of K and the bias
  void backward(int64_t R, const T* x, int64_t ldx, const T* h, int64_t ldh, const T* dS,
                int64_t ldS, T* dx, int64_t lddx, T* dh, int64_t lddh, T* dK, T* db,
                T* scratch) const {
    const int64_t nx = cs.rows_x();
    const int64_t skip = dx ? 0 : nx;  // the x rows of dcol only when dx is wanted
    for (int64_t r0 = 0; r0 < R; r0 += block) {
      const int64_t Rb = std::min(block, R - r0), RW = Rb * cs.W;
      T* col = scratch;
      T* dY = col + RW * cs.rows();
      T* dcol = dY + RW * cs.Go;
      gather(cs, Rb, dS + r0 * ldS, ldS, dY, db);
      mm_tn<T>(cs.rows() - skip, RW, cs.Go, K + skip, cs.rows(), dY, RW, T(0),
               dcol + skip * RW, RW);
      if (dx) col2im(cs, cs.Ci, Rb, dcol, RW, dx + r0 * lddx, lddx);
      col2im(cs, cs.C, Rb, dcol + nx * RW, RW, dh + r0 * lddh, lddh);
      im2col(cs, cs.Ci, Rb, x + r0 * ldx, ldx, col, RW);
      im2col(cs, cs.C, Rb, h + r0 * ldh, ldh, col + nx * RW, RW);
      mm_nt<T>(cs.Go, cs.rows(), RW, dY, RW, col, RW, T(1), dK, cs.rows());
    }
  }
};

}  // namespace rnnzoo_fused
