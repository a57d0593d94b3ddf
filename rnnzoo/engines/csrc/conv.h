// The second kind of product of the generic drivers: 1-D "same" convolutions over the width
// of channel-major maps (the row cells convrnn and convlstm), instead of dense GEMMs with
// their banded (Toeplitz) matrices, which spend W / k times more multiply-adds (28 / 5 =
// 5.6x on the row view). Both maps of a step run as ONE convolution over the Ci + C channels
// z = [x_t ; h_{t-1} * mask], whose output lands in S in the layout the dense GEMMs would
// write, so the element-wise families run unchanged.
//
// Layout: x_t (R, Ci*W) and h (R, C*W), h[r, c*W + w]; the kernel K (Go, (Ci + C)*k) = [K_x |
// K_h], K_h[o, c*k + j] (torch's Conv1d weight (Go, C, k) flattened); the output S (R, Go*W),
// S[r, o*W + w] = bias[o*W + w] + sum_{c, j} K[o, c*k + j] z[r, c, w + j - p] with p = (k -
// 1) / 2 and zeros outside [0, W) (torch's padding="same").
//
// The product is computed directly, L = Vec<T>::size() batch rows at a time in the vector
// lanes (conv_tiles.h), with no im2col and no GEMM. It replaced im2col + MKL's GEMM, whose
// (16, 85) x (85, R*W) product ran at 44 GFLOP/s on this machine's 92 GFLOP/s core (one
// operand is only 16 rows, so packing the other costs as much as the multiply-adds); the
// tiles run at 71-85 (measured alone, row-view shapes, 1 thread). Per block of L rows:
//
//   forward   z -> map block (conv_pack.h), Y = correlate(K, z), S = bias + Y (back to rows)
//   backward  dY = dS as a map block (db += the rows of dS);
//             dz = correlate(K', dY) with K'[c, o*k + j] = K[o, c*k + k - 1 - j] and dY
//             shifted by k - 1 - p: the maps' gradient (dh_{t-1}, and dx_t when wanted);
//             dK += sum over the block's positions of dY z, kept per lane in dKv and summed
//             over the lanes once, at the end of the shard's time loop (finish_backward).
//
// Every function works on caller-owned buffers (the drivers' per-shard scratch), so the
// shards stay independent and the sums keep their order for any thread count.
#pragma once

#include <ATen/ops/cat.h>

#include "conv_pack.h"
#include "conv_tiles.h"
#include "runtime.h"

namespace rnnzoo_fused {

// sizes of the convolution; W == 0 means "no convolution: the dense GEMMs"
struct ConvShape {
  int64_t W = 0, Ci = 0, C = 0, k = 0, Go = 0;
  bool on() const { return W > 0; }
  int64_t rows_x() const { return Ci * k; }        // taps of x_t's maps: K_x's columns
  int64_t rows() const { return (Ci + C) * k; }    // all taps: the kernel's columns
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

// One step's convolution for a shard, block by block of L batch rows, on its scratch
// (scratch_size elements, from a 64-byte boundary on): dKv (Go, (Ci + C)*k, L), z ((Ci +
// C), Wp, L), Y / dY (Go, Wp, L), dz ((Ci + C), Wr, L), the flipped kernel K' ((Ci + C),
// Go*k). Wr: W rounded up to the tiles' kTileW positions (the extra outputs are computed and
// dropped), Wp = Wr + k - 1. dKv and K' live through a backward time loop: start_backward
// before it, finish_backward after it.
template <typename T>
struct ConvProduct {
  ConvShape cs;
  const T* K;  // (Go, rows()) = [K_x | K_h]
  static constexpr int64_t L = Vec<T>::size();
  static constexpr int64_t kAlign = 64 / sizeof(T);  // elements to a 64-byte boundary

  static int64_t Wr(const ConvShape& cs) { return (cs.W + kTileW - 1) / kTileW * kTileW; }
  static int64_t Wp(const ConvShape& cs) { return Wr(cs) + cs.k - 1; }
  static int64_t scratch_size(const ConvShape& cs) {
    if (!cs.on()) return 0;
    const int64_t Cz = cs.Ci + cs.C;
    return kAlign + cs.Go * cs.rows() * (L + 1) +
           L * (Cz * Wp(cs) + cs.Go * Wp(cs) + Cz * Wr(cs));
  }

  struct Areas {
    T *dKv, *z, *y, *dz, *Kf;
  };
  Areas areas(T* scratch) const {
    const auto at = reinterpret_cast<uintptr_t>(scratch);
    T* base = reinterpret_cast<T*>((at + 63) & ~uintptr_t(63));  // every area L-aligned
    Areas a{base, nullptr, nullptr, nullptr, nullptr};
    a.z = a.dKv + cs.Go * cs.rows() * L;
    a.y = a.z + (cs.Ci + cs.C) * Wp(cs) * L;
    a.dz = a.y + cs.Go * Wp(cs) * L;
    a.Kf = a.dz + (cs.Ci + cs.C) * Wr(cs) * L;
    return a;
  }

  // z's block: [x ; h] rows r0.. (nl of them) as maps, positions shifted by p
  void pack_z(int64_t nl, const T* x, int64_t ldx, const T* h, int64_t ldh, T* z) const {
    pack_block(cs.Ci, cs.W, Wp(cs), cs.left(), nl, x, ldx, z);
    pack_block(cs.C, cs.W, Wp(cs), cs.left(), nl, h, ldh, z + cs.Ci * Wp(cs) * L);
  }

  // S (R, ldS) = bias + conv([x ; h]) (S += conv(...) with a null bias): x (R, Ci*W), h (R,
  // C*W) with leading dimensions ldx, ldh, bias (Go*W)
  void forward(int64_t R, const T* x, int64_t ldx, const T* h, int64_t ldh, const T* bias, T* S,
               int64_t ldS, T* scratch) const {
    const Areas a = areas(scratch);
    for (int64_t r0 = 0; r0 < R; r0 += L) {
      const int64_t nl = std::min(L, R - r0);
      pack_z(nl, x + r0 * ldx, ldx, h + r0 * ldh, ldh, a.z);
      correlate(K, cs.Go, cs.Ci + cs.C, cs.k, a.z, Wp(cs), Wr(cs), a.y);
      unpack_block(cs.Go, cs.W, Wr(cs), nl, a.y, bias, bias == nullptr, S + r0 * ldS, ldS);
    }
  }

  // before a backward time loop: dKv = 0, K'[c, o*k + j] = K[o, c*k + k - 1 - j]
  void start_backward(T* scratch) const {
    const Areas a = areas(scratch);
    const int64_t Cz = cs.Ci + cs.C, nK = cs.Go * cs.rows();
    std::fill(a.dKv, a.dKv + nK * L, T(0));
    for (int64_t c = 0; c < Cz; ++c) {
      for (int64_t o = 0; o < cs.Go; ++o) {
        for (int64_t j = 0; j < cs.k; ++j) {
          a.Kf[(c * cs.Go + o) * cs.k + j] = K[o * cs.rows() + c * cs.k + cs.k - 1 - j];
        }
      }
    }
  }

  // the gradients of sum(dS * (bias + conv([x ; h]))): dh (R, lddh) and, unless dx is null,
  // dx (R, lddx); db (Go*W) += that of the bias; dK's share goes to dKv (finish_backward)
  void backward(int64_t R, const T* x, int64_t ldx, const T* h, int64_t ldh, const T* dS,
                int64_t ldS, T* dx, int64_t lddx, T* dh, int64_t lddh, T* db,
                T* scratch) const {
    const Areas a = areas(scratch);
    const int64_t Cz = cs.Ci + cs.C, GW = cs.Go * cs.W, shift = cs.k - 1 - cs.left();
    const int64_t c0 = dx ? 0 : cs.Ci;  // the x maps' gradient only when dx is wanted
    for (int64_t r0 = 0; r0 < R; r0 += L) {
      const int64_t nl = std::min(L, R - r0);
      const T* dSb = dS + r0 * ldS;
      for (int64_t l = 0; l < nl; ++l) {
        for (int64_t i = 0; i < GW; ++i) db[i] += dSb[l * ldS + i];
      }
      pack_block(cs.Go, cs.W, Wp(cs), shift, nl, dSb, ldS, a.y);
      correlate(a.Kf + c0 * cs.Go * cs.k, Cz - c0, cs.Go, cs.k, a.y, Wp(cs), Wr(cs),
                a.dz + c0 * Wr(cs) * L);
      const T* no_bias = nullptr;
      if (dx) unpack_block(cs.Ci, cs.W, Wr(cs), nl, a.dz, no_bias, false, dx + r0 * lddx, lddx);
      unpack_block(cs.C, cs.W, Wr(cs), nl, a.dz + cs.Ci * Wr(cs) * L, no_bias, false,
                   dh + r0 * lddh, lddh);
      pack_z(nl, x + r0 * ldx, ldx, h + r0 * ldh, ldh, a.z);
      kernel_grad(a.y + shift * L, Wp(cs) * L, cs.Go, a.z, Wp(cs) * L, Cz, cs.k, cs.W, a.dKv);
    }
  }

  // after the time loop: dK (Go, rows()) += dKv summed over its lanes
  void finish_backward(T* scratch, T* dK) const {
    const T* dKv = areas(scratch).dKv;
    for (int64_t i = 0; i < cs.Go * cs.rows(); ++i) {
      T sum = T(0);
      for (int64_t l = 0; l < L; ++l) sum += dKv[i * L + l];
      dK[i] += sum;
    }
  }
};

}  // namespace rnnzoo_fused
