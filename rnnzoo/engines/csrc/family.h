// The kernel-family interface: what one family (elman, lstm, gru, ...) gives the shared
// drivers (drivers.cpp), and the registry the ops look families up in by name.
//
// A family is a struct with static members, registered with one line at the end of its
// header: RNNZOO_FAMILY(name, Struct). Notation: B batch rows, N state width (the width of
// each state tensor: usually the hidden size H; a family with a packed state, e.g. [y | z],
// has N = 2H), I input width. Per step the drivers compute, for the R rows of a shard:
//
//   X   = b + x_t W_ih^T                        (R, G)  input pre-activations
//   hr  = h_{t-1} * mask                        (R, N)  (mask: recurrent dropout, or none)
//   S   = hr W_hh^T [+ X when kInputInS]        (R, Gr) the ONE recurrent GEMM (K = N)
//   fwd(FwdArgs)  -> h_t (R, N), c_t, y_t, activations to keep
//
// and in the reverse loop, with dh = dL/dh_t complete (output, next step, final state):
//
//   bwd(BwdArgs)  -> dG = dL/dS (R, Gr), dX = dL/dX (R, G) (aliases dG when kInputInS and
//                    Gr > 0), direct part of dL/dh_{t-1}, dc_{t-1}, extra-parameter grads
//   dhr = dG W_hh  (the GEMM's part of dL/dh_{t-1}, multiplied by the mask)
//
// The weight gradients (dW_hh = sum dG^T hr, dW_ih = sum dX^T x, db = sum dX) and the
// partial sums over shards are the drivers' job: a family is element-wise code only.
//
// Members of a family struct:
//   kStates    1: state (h,); 2: state (h, c), both N wide
//   kInputInS  true: X is added into the GEMM output S (needs G == Gr when Gr > 0) and the
//              family reads S only; false: the family reads X separately (GRU, whose
//              candidate mixes input and recurrent parts differently)
//   kOutput    Output::kState: y_t = h_t (out = N); Output::kStatePrefix: y_t = the first
//              `out` columns of h_t (packed states); Output::kOwn: the family writes y_t
//              itself (out wide) and reads dy in backward (+RNN's y, input wide)
//   kDirect    true: bwd writes `direct`, the part of dL/dh_{t-1} that bypasses the GEMM
//              and the mask (gated updates h = g h_{t-1} + ..., residual forms h + eps f)
//   gates(N, I), rec(N, I), saved(N, I), out(N, I), extra(N, I): widths G, Gr (0: no
//              GEMM, e.g. IndRNN; then bwd writes dhr itself), activations kept per row
//              for backward, y_t, and the flat extra-parameter vector E (peepholes, leak
//              rates, GRU's b_hn, IndRNN's u)
//   template <typename T> static void fwd(const FwdArgs<T>&), bwd(const BwdArgs<T>&)
//
// The Python side (a cell's fused_params()) passes w_ih (G, I), bias (G,), w_hh (Gr, N) or
// an empty tensor, extra (E,) or an empty tensor, and the state tensors (B, N). A row cell
// passes conv_width = W and its compact kernels as w_ih and w_hh: the drivers then compute
// X + S of every step as ONE 1-D convolution over [x_t ; hr] (conv.h) in the same layout.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "runtime.h"

namespace rnnzoo_fused {

enum class Output { kState, kStatePrefix, kOwn };

// what one family's element-wise step sees (rows of the current shard, row-major)
template <typename T>
struct FwdArgs {
  int64_t R, N, I;
  const T* S;    // (R, Gr) GEMM output; with kInputInS it includes X
  const T* X;    // (R, G) input pre-activations when not kInputInS, else null
  const T* x;    // (R, I) raw input (e.g. +RNN's skip term)
  const T* hp;   // (R, N) h_{t-1}
  const T* hr;   // (R, N) h_{t-1} * mask (= hp without a mask)
  const T* cp;   // (R, N) c_{t-1} (kStates == 2)
  const T* p;    // (E,) extra parameters
  T* h;          // (R, N) new h
  T* c;          // (R, N) new c (kStates == 2)
  T* y;          // (R, out) output when kOutput == kOwn
  T* act;        // (R, saved) activations kept for backward
};

template <typename T>
struct BwdArgs {
  int64_t R, N, I;
  T* dh;          // (R, N) gradient w.r.t. h_t (complete)
  const T* dy;    // (R, out) gradient w.r.t. y_t with kOutput == kOwn (may be null)
  T* dc;          // (R, N) in: gradient w.r.t. c_t, out: w.r.t. c_{t-1}
  const T* act;   // saved activations of step t
  const T* h;     // (R, N) h_t
  const T* hp;    // (R, N) h_{t-1}
  const T* hr;    // (R, N) h_{t-1} * mask
  const T* c;     // (R, N) c_t
  const T* cp;    // (R, N) c_{t-1}
  const T* x;     // (R, I) x_t
  const T* p;     // extra parameters
  T* dG;          // (R, Gr) gradient w.r.t. the recurrent GEMM output
  T* dX;          // (R, G) gradient w.r.t. the input pre-activations (may alias dG)
  T* direct;      // (R, N) part of dh_{t-1} that bypasses the GEMM and the mask (kDirect)
  T* dhr;         // (R, N) gradient w.r.t. h_{t-1} * mask, for families without a GEMM
  T* dx;          // (R, I) direct part of dx_t (kOwn output), null when dx is not needed
  T* acc;         // (E,) this shard's accumulators for the extra parameters' gradients
};

// one family as the drivers see it: sizes, flags and its two element-wise steps. The
// drivers are compiled once per dtype (not per family), which keeps the build short.
template <typename T>
struct Kernel {
  int states;
  bool input_in_s;
  Output output;
  bool direct;
  int64_t G, Gr, Sv, O, E;  // widths: gates, GEMM output, saved, output; extra parameters
  void (*fwd)(const FwdArgs<T>&);
  void (*bwd)(const BwdArgs<T>&);
};

// the dtype of a Kernel<T>
template <typename K>
struct ScalarOf;
template <typename T>
struct ScalarOf<Kernel<T>> {
  using type = T;
};

template <class Family, typename T>
Kernel<T> kernel_of(int64_t N, int64_t I) {
  return Kernel<T>{Family::kStates,          Family::kInputInS,        Family::kOutput,
                   Family::kDirect,          Family::gates(N, I),      Family::rec(N, I),
                   Family::saved(N, I),      Family::out(N, I),        Family::extra(N, I),
                   &Family::template fwd<T>, &Family::template bwd<T>};
}

// name -> the family's kernels for float and double
struct FamilyEntry {
  Kernel<float> (*f32)(int64_t N, int64_t I);
  Kernel<double> (*f64)(int64_t N, int64_t I);
};

inline std::map<std::string, FamilyEntry>& family_registry() {
  static std::map<std::string, FamilyEntry> registry;
  return registry;
}

template <class Family>
struct FamilyRegistrar {
  explicit FamilyRegistrar(const char* name) {
    family_registry()[name] = FamilyEntry{&kernel_of<Family, float>, &kernel_of<Family, double>};
  }
};

}  // namespace rnnzoo_fused

// registers Family under `name` (a bare identifier: the name the Python cells use); write
// it inside namespace rnnzoo_fused, after the family's struct
#define RNNZOO_FAMILY(name, ...) \
  inline const FamilyRegistrar<__VA_ARGS__> rnnzoo_family_##name{#name};
