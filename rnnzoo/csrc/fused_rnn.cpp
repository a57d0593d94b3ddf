// Fused CPU kernels for the rnnzoo cells: the whole time loop of one layer in C++, forward
// and a hand-derived backward. Python side and build: rnnzoo/engines/fused.py, fused_build.py.
//
// One translation unit with ATen headers only: the ops are registered with TORCH_LIBRARY and
// called as torch.ops.rnnzoo_fused.* (no pybind11), and the two drivers are compiled once
// per dtype, not once per cell (a cell is a table of sizes and two element-wise functions,
// see Kernel), which keeps the first build around 20-25 s.
//
// How the work is laid out:
//
// - Shards. The batch is split into one shard per thread (at::parallel_for), and each shard
//   runs the WHOLE time loop on its own rows: row b of h_t depends only on row b of h_{t-1},
//   so the threads never synchronize inside the loop (no fork/join per step). Every BLAS
//   call inside a shard is single-threaded (SingleThreadBlas).
// - Forward, per step and shard: the input pre-activations b + x_t W_ih^T (an inline FMA
//   loop for tiny inputs such as pixel MNIST's I = 1, a GEMM otherwise); ONE recurrent GEMM
//   (h_{t-1} * mask) W_hh^T with W_hh packed once per call (MKL's packed GEMM, StepGemm);
//   one vectorized pass (at::vec::Vectorized, AVX-512/AVX2 as built) over the gates that
//   writes h_t, c_t and the activations backward needs.
// - Backward, reverse loop per shard: one vectorized pass for the pre-activation gradients
//   dG_t (and, for tiny inputs, dW_ih and db accumulated on the spot); one GEMM dG_t W_hh
//   for the recurrent part of dh_{t-1}. dG_t and that step's GEMM input h_{t-1} * mask go to
//   a per-shard chunk buffer; every g_chunk_rows rows ONE GEMM adds the chunk to dW_hh (and
//   [dW_ih | db] for wide inputs) while it is still in cache. The shards' partial weight
//   gradients are summed at the end, in shard order.
// - Denormals are flushed to zero inside the kernels' threads (FlushDenormals), and the big
//   per-step buffers come from a small cache of already-mapped memory (BufferCache).
//
// Cells (the `cell` argument of the ops): elman_tanh, elman_relu, lstm, peephole, gru,
// indrnn, ugrnn, intersection. The equations are in rnnzoo/cells/*.py; each backward below
// states its derivatives. Everything is checked against the loop engine in
// tests/test_fused.py.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <chrono>
#include <ctime>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace rnnzoo_fused {
namespace {

using at::Tensor;
template <typename T>
using Vec = at::vec::Vectorized<T>;

// inputs at most this wide are projected with an inline FMA loop instead of a GEMM
constexpr int64_t kSmallInput = 4;
// rows (steps x shard rows) per weight-gradient GEMM in backward
int64_t g_chunk_rows = 256;
// fewest batch rows per shard (a smaller shard makes the per-step GEMMs inefficient)
int64_t g_min_shard_rows = 16;

// ---------------------------------------------------------------------------------------
// profiling: seconds per phase, summed over shards (enabled from Python for the benchmark)
enum Phase { kFwdInput, kFwdGemm, kFwdElem, kBwdElem, kBwdGemm, kBwdCopy, kBwdFlush, kPhases };
bool g_profile = false;
std::array<double, kPhases> g_times{};
std::mutex g_times_mutex;

// thread CPU time, so a busy machine (descheduled threads) does not inflate the phases
inline double thread_seconds() {
#if defined(__linux__)
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
#else
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
#endif
}

struct Timer {
  std::array<double, kPhases> t{};
  double last = 0;
  void start() {
    if (g_profile) last = thread_seconds();
  }
  void lap(Phase p) {
    if (!g_profile) return;
    const double now = thread_seconds();
    t[p] += now - last;
    last = now;
  }
  void commit() {
    if (!g_profile) return;
    std::lock_guard<std::mutex> lock(g_times_mutex);
    for (int i = 0; i < kPhases; ++i) g_times[i] += t[i];
  }
};

// ---------------------------------------------------------------------------------------
// row-major GEMMs on top of the column-major Fortran BLAS that libtorch_cpu links (MKL on
// x86 builds of torch, OpenBLAS or Accelerate elsewhere); ATen's own wrapper
// (at::native::cpublas::gemm) is not exported to extensions.

}  // namespace
}  // namespace rnnzoo_fused

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b,
            const int* ldb, const double* beta, double* c, const int* ldc);
// MKL's packed GEMM (float only in torch's MKL); weak: null where torch has no MKL
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k) __attribute__((weak));
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha,
                      const float* src, int ld, float* dest) __attribute__((weak));
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k,
                         const float* a, int lda, const float* b, int ldb, float beta,
                         float* c, int ldc) __attribute__((weak));
// MKL's per-thread thread count (returns the previous one; 0 = the global setting)
int MKL_Set_Num_Threads_Local(int nt) __attribute__((weak));
}

namespace rnnzoo_fused {
namespace {

// column-major C (m x n) = op(a) op(b) + beta C
inline void blas_gemm(char ta, char tb, int64_t m, int64_t n, int64_t k, const float* a,
                      int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                      int64_t ldc) {
  const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
  const int LA = static_cast<int>(lda), LB = static_cast<int>(ldb), LC = static_cast<int>(ldc);
  const float one = 1.0f;
  sgemm_(&ta, &tb, &M, &N, &K, &one, a, &LA, b, &LB, &beta, c, &LC);
}

inline void blas_gemm(char ta, char tb, int64_t m, int64_t n, int64_t k, const double* a,
                      int64_t lda, const double* b, int64_t ldb, double beta, double* c,
                      int64_t ldc) {
  const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
  const int LA = static_cast<int>(lda), LB = static_cast<int>(ldb), LC = static_cast<int>(ldc);
  const double one = 1.0;
  dgemm_(&ta, &tb, &M, &N, &K, &one, a, &LA, b, &LB, &beta, c, &LC);
}

// C (M x N) = A (M x K) B^T + beta C, with B (N x K)
template <typename T>
void mm_nt(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
           T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  blas_gemm('T', 'N', N, M, K, B, ldb, A, lda, beta, C, ldc);
}

// C (M x N) = A (M x K) B + beta C, with B (K x N)
template <typename T>
void mm_nn(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
           T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  blas_gemm('N', 'N', N, M, K, B, ldb, A, lda, beta, C, ldc);
}

// C (M x N) = A^T B + beta C, with A (K x M), B (K x N)
template <typename T>
void mm_tn(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
           T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  blas_gemm('N', 'T', N, M, K, B, ldb, A, lda, beta, C, ldc);
}

bool g_use_packed = true;

// BLAS calls from the shard threads must stay single-threaded: torch turns MKL's dynamic
// threading off, so MKL would otherwise open a nested team per call (measured: 2 shards x 2
// MKL threads on 2 cores made a training step 25x slower). Per-thread setting, restored.
struct SingleThreadBlas {
  int saved = 0;
  SingleThreadBlas() {
    if (MKL_Set_Num_Threads_Local) saved = MKL_Set_Num_Threads_Local(1);
  }
  ~SingleThreadBlas() {
    if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(saved);
  }
};

// The per-step GEMM with the recurrent weight as its fixed left operand op(A) (column-major
// m x k): C (m x n) = op(A) B + beta C, n = the shard's rows. The weight is the same for all
// T steps, so with MKL it is packed once per shard (MKL's packed-GEMM API) and every step
// skips re-packing it. Plain BLAS otherwise (and for float64).
template <typename T>
struct StepGemm {
  char ta;
  int64_t m, k;
  const T* a;
  int64_t lda;
  std::vector<float> packed;

  StepGemm(char ta_, int64_t m_, int64_t k_, const T* a_, int64_t lda_, int64_t n)
      : ta(ta_), m(m_), k(k_), a(a_), lda(lda_) {
    if constexpr (std::is_same_v<T, float>) {
      if (g_use_packed && m > 0 && k > 0 && n > 0 && cblas_sgemm_pack_get_size &&
          cblas_sgemm_pack && cblas_sgemm_compute) {
        constexpr int kColMajor = 102, kNoTrans = 111, kTrans = 112, kAMatrix = 161;
        const size_t bytes = cblas_sgemm_pack_get_size(kAMatrix, int(m), int(n), int(k));
        packed.resize(bytes / sizeof(float) + 1);
        cblas_sgemm_pack(kColMajor, kAMatrix, ta == 'T' ? kTrans : kNoTrans, int(m), int(n),
                         int(k), 1.0f, a, int(lda), packed.data());
      }
    }
  }

  void run(int64_t n, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) const {
    if (n == 0 || m == 0) return;
    if constexpr (std::is_same_v<T, float>) {
      if (!packed.empty()) {
        constexpr int kColMajor = 102, kNoTrans = 111, kPacked = 151;
        cblas_sgemm_compute(kColMajor, kPacked, kNoTrans, int(m), int(n), int(k), packed.data(),
                            int(lda), b, int(ldb), beta, c, int(ldc));
        return;
      }
    }
    blas_gemm(ta, 'N', m, n, k, a, lda, b, ldb, beta, c, ldc);
  }
};

// ---------------------------------------------------------------------------------------
// vector helpers

template <typename T>
inline Vec<T> vload(const T* p, int64_t n) {
  return n == Vec<T>::size() ? Vec<T>::loadu(p) : Vec<T>::loadu(p, n);
}

template <typename T>
inline void vstore(T* p, const Vec<T>& v, int64_t n) {
  if (n == Vec<T>::size()) {
    v.store(p);
  } else {
    v.store(p, static_cast<int>(n));
  }
}

// f(j, n) for j = 0, V, 2V, ... with n = lanes in use (V except for the tail)
template <typename T, typename F>
inline void for_lanes(int64_t width, const F& f) {
  constexpr int64_t V = Vec<T>::size();
  int64_t j = 0;
  for (; j + V <= width; j += V) f(j, V);
  if (j < width) f(j, width - j);
}

template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) {
  const Vec<T> one(T(1));
  return one / (one + x.neg().exp_u20());
}

// tanh(x) = 2 sigmoid(2x) - 1: one exp and one division, ~3x faster than Sleef's tanh.
// Absolute error ~1 ulp of 1 (1e-7 in float32); the float64 path uses Sleef's exp (1 ulp).
template <typename T>
inline Vec<T> vtanh(const Vec<T>& x) {
  const Vec<T> one(T(1)), two(T(2));
  return two / (one + (x * Vec<T>(T(-2))).exp_u20()) - one;
}

// Denormal numbers make every float op on them ~100x slower. Gradients that fade over
// hundreds of steps of backpropagation through time become denormal routinely (measured:
// an sMNIST LSTM backward went from ~0.3 s to ~2 s per batch). The kernels' threads flush
// them to zero (FTZ/DAZ) while they run and restore the previous mode afterwards; this
// changes results only below 1e-38 (float32) / 1e-308 (float64).
struct FlushDenormals {
#if defined(__x86_64__) || defined(_M_X64)
  unsigned int saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// Big buffers (the saved activations of 784 steps are ~200 MB per layer) would be fresh
// memory on every call, and the kernel zeroes every fresh page at its first write: ~50-100 ms
// per training step measured here, a fifth of the step. So the kernels take their big
// buffers from a small cache: a buffer whose tensor dies goes back to the cache (from_blob
// with a deleter) and the next call of a similar size reuses it, pages already mapped.
// Buffers are 2 MB aligned and advised as transparent huge pages. The cache holds at most
// RNNZOO_FUSED_CACHE_MB megabytes (default 1024; 0 turns it off) of unused buffers.
class BufferCache {
 public:
  static BufferCache& get() {
    static BufferCache* cache = new BufferCache();  // never destroyed: tensors may outlive it
    return *cache;
  }

  // a buffer of at least `bytes`; `*capacity` receives its real size
  void* take(size_t bytes, size_t* capacity) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      size_t best = free_.size();
      for (size_t i = 0; i < free_.size(); ++i) {
        const size_t cap = free_[i].first;
        if (cap >= bytes && cap <= bytes + bytes / 4 &&
            (best == free_.size() || cap < free_[best].first)) {
          best = i;
        }
      }
      if (best != free_.size()) {
        *capacity = free_[best].first;
        void* p = free_[best].second;
        held_ -= *capacity;
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
        return p;
      }
    }
    constexpr size_t kHuge = size_t(2) << 20;
    *capacity = (bytes + kHuge - 1) / kHuge * kHuge;
    void* p = std::aligned_alloc(kHuge, *capacity);
    TORCH_CHECK(p != nullptr, "rnnzoo fused kernels: out of memory allocating ", *capacity,
                " bytes");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, *capacity, MADV_HUGEPAGE);
#endif
    return p;
  }

  void give_back(void* p, size_t capacity) {
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (capacity > limit_) {
        drop.push_back(p);
      } else {
        free_.emplace_back(capacity, p);
        held_ += capacity;
        while (held_ > limit_) {  // oldest first
          held_ -= free_.front().first;
          drop.push_back(free_.front().second);
          free_.erase(free_.begin());
        }
      }
    }
    for (void* q : drop) std::free(q);
  }

  size_t limit() const { return limit_; }

 private:
  BufferCache() {
    const char* env = std::getenv("RNNZOO_FUSED_CACHE_MB");
    const long mb = env ? std::atol(env) : 1024;
    limit_ = mb > 0 ? size_t(mb) << 20 : 0;
  }
  std::mutex mutex_;
  std::vector<std::pair<size_t, void*>> free_;
  size_t held_ = 0;
  size_t limit_ = 0;
};

// at::empty for the big buffers (through the cache), plain at::empty for small ones
Tensor big_empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  int64_t numel = 1;
  for (int64_t n : sizes) numel *= n;
  const size_t bytes = size_t(numel) * opts.dtype().itemsize();
  BufferCache& cache = BufferCache::get();
  if (bytes < (size_t(8) << 20) || cache.limit() == 0) return at::empty(sizes, opts);
  size_t capacity = 0;
  void* p = cache.take(bytes, &capacity);
  return at::from_blob(
      p, sizes, [capacity](void* q) { BufferCache::get().give_back(q, capacity); }, opts);
}

// ---------------------------------------------------------------------------------------
// what one cell's element-wise step sees (rows of the current shard, row-major)

template <typename T>
struct FwdArgs {
  int64_t R, H, I;
  const T* S;    // (R, rec_width) GEMM output; for kInputInS cells it includes b + x W_ih^T
  const T* X;    // (R, gates) b + x W_ih^T for cells that keep it apart (GRU), else null
  const T* x;    // (R, I) raw input (intersection's skip term)
  const T* hp;   // (R, H) h_{t-1}
  const T* hr;   // (R, H) h_{t-1} * mask (= hp without a mask)
  const T* cp;   // (R, H) c_{t-1}
  const T* p;    // extra parameters (peepholes, b_hn, u)
  T* h;          // (R, H) new h
  T* c;          // (R, H) new c
  T* y;          // (R, out) output when it is not h
  T* act;        // (R, saved) activations kept for backward
};

template <typename T>
struct BwdArgs {
  int64_t R, H, I;
  T* dh;          // (R, H) gradient w.r.t. h_t (complete)
  const T* dy;    // (R, out) gradient w.r.t. y_t when the output is not h (may be null)
  T* dc;          // (R, H) in: gradient w.r.t. c_t, out: w.r.t. c_{t-1}
  const T* act;   // saved activations of step t
  const T* h;     // (R, H) h_t
  const T* hp;    // (R, H) h_{t-1}
  const T* hr;    // (R, H) h_{t-1} * mask
  const T* c;     // (R, H) c_t
  const T* cp;    // (R, H) c_{t-1}
  const T* x;     // (R, I) x_t
  const T* p;     // extra parameters
  T* dG;          // (R, rec_width) gradient w.r.t. the recurrent GEMM output
  T* dX;          // (R, gates) gradient w.r.t. the input pre-activations (may alias dG)
  T* direct;      // (R, H) part of dh_{t-1} that bypasses the GEMM and the mask
  T* dhr;         // (R, H) gradient w.r.t. h_{t-1} * mask for cells without a GEMM
  T* dx;          // (R, I) direct part of dx_t (intersection), null when dx is not needed
  T* acc;         // per-shard accumulators for the extra parameters' gradients
};

// ---------------------------------------------------------------------------------------
// cells. Sizes: gates = width of the input pre-activations, rec = width of the recurrent
// GEMM output (0: no GEMM), saved = activations kept per row, out = width of y_t.

// h_t = act(pre), pre = x W_ih^T + b + (h * mask) W_hh^T
template <bool kRelu>
struct Elman {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr bool kOutputIsH = true;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t H, int64_t) { return H; }
  static int64_t rec(int64_t H, int64_t) { return H; }
  static int64_t saved(int64_t, int64_t) { return 0; }
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t) { return 0; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.H;
    const Vec<T> zero(T(0));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * H;
      T* h = a.h + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> v = vload(s + j, n);
        vstore(h + j, kRelu ? at::vec::maximum(v, zero) : vtanh(v), n);
      });
    }
  }

  // tanh: dpre = dh (1 - h^2); relu: dpre = dh [h > 0]
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.H;
    const Vec<T> one(T(1)), zero(T(0));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* h = a.h + r * H;
      const T* dh = a.dh + r * H;
      T* dg = a.dG + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> hv = vload(h + j, n), d = vload(dh + j, n);
        Vec<T> dpre = kRelu ? Vec<T>::blendv(zero, d, hv > zero) : d * (one - hv * hv);
        vstore(dg + j, dpre, n);
      });
    }
  }
};

// torch.nn.LSTM: gates i, f, g, o; c = f c_prev + i g; h = o tanh(c)
struct Lstm {
  static constexpr int kStates = 2;
  static constexpr bool kInputInS = true;
  static constexpr bool kOutputIsH = true;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t H, int64_t) { return 4 * H; }
  static int64_t rec(int64_t H, int64_t) { return 4 * H; }
  static int64_t saved(int64_t H, int64_t) { return 4 * H; }
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t) { return 0; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.H;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 4 * H;
      T* act = a.act + r * 4 * H;
      const T* cp = a.cp + r * H;
      T* c = a.c + r * H;
      T* h = a.h + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> i = sigmoid(vload(s + j, n));
        Vec<T> f = sigmoid(vload(s + H + j, n));
        Vec<T> g = vtanh(vload(s + 2 * H + j, n));
        Vec<T> o = sigmoid(vload(s + 3 * H + j, n));
        Vec<T> cv = f * vload(cp + j, n) + i * g;
        vstore(c + j, cv, n);
        vstore(h + j, o * vtanh(cv), n);
        vstore(act + j, i, n);
        vstore(act + H + j, f, n);
        vstore(act + 2 * H + j, g, n);
        vstore(act + 3 * H + j, o, n);
      });
    }
  }

  // tc = tanh(c); dc_t += dh o (1 - tc^2); d_o = dh tc; d_i = dc g; d_f = dc c_prev;
  // d_g = dc i; pre-activation grads through sigma' = s (1 - s), tanh' = 1 - g^2;
  // dc_{t-1} = dc_t f
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.H;
    const Vec<T> one(T(1));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* act = a.act + r * 4 * H;
      const T* c = a.c + r * H;
      const T* cp = a.cp + r * H;
      const T* dh = a.dh + r * H;
      T* dc = a.dc + r * H;
      T* dg = a.dG + r * 4 * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> i = vload(act + j, n), f = vload(act + H + j, n);
        Vec<T> g = vload(act + 2 * H + j, n), o = vload(act + 3 * H + j, n);
        Vec<T> tc = vtanh(vload(c + j, n));
        Vec<T> d = vload(dh + j, n);
        Vec<T> dct = vload(dc + j, n) + d * o * (one - tc * tc);
        vstore(dg + j, dct * g * i * (one - i), n);
        vstore(dg + H + j, dct * vload(cp + j, n) * f * (one - f), n);
        vstore(dg + 2 * H + j, dct * i * (one - g * g), n);
        vstore(dg + 3 * H + j, d * tc * o * (one - o), n);
        vstore(dc + j, dct * f, n);
      });
    }
  }
};

// peephole LSTM: i, f see c_{t-1} through p_i, p_f; o sees c_t through p_o (extra = [p_i,
// p_f, p_o], 3H)
struct Peephole {
  static constexpr int kStates = 2;
  static constexpr bool kInputInS = true;
  static constexpr bool kOutputIsH = true;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t H, int64_t) { return 4 * H; }
  static int64_t rec(int64_t H, int64_t) { return 4 * H; }
  static int64_t saved(int64_t H, int64_t) { return 4 * H; }
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t H) { return 3 * H; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.H;
    const T* pi = a.p;
    const T* pf = a.p + H;
    const T* po = a.p + 2 * H;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 4 * H;
      T* act = a.act + r * 4 * H;
      const T* cp = a.cp + r * H;
      T* c = a.c + r * H;
      T* h = a.h + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> cpv = vload(cp + j, n);
        Vec<T> i = sigmoid(vload(s + j, n) + vload(pi + j, n) * cpv);
        Vec<T> f = sigmoid(vload(s + H + j, n) + vload(pf + j, n) * cpv);
        Vec<T> g = vtanh(vload(s + 2 * H + j, n));
        Vec<T> cv = f * cpv + i * g;
        Vec<T> o = sigmoid(vload(s + 3 * H + j, n) + vload(po + j, n) * cv);
        vstore(c + j, cv, n);
        vstore(h + j, o * vtanh(cv), n);
        vstore(act + j, i, n);
        vstore(act + H + j, f, n);
        vstore(act + 2 * H + j, g, n);
        vstore(act + 3 * H + j, o, n);
      });
    }
  }

  // as the LSTM, plus: dpre_o feeds dc_t through p_o, dpre_i and dpre_f feed dc_{t-1}
  // through p_i, p_f; dp_i += dpre_i c_{t-1}, dp_f += dpre_f c_{t-1}, dp_o += dpre_o c_t
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.H;
    const T* pi = a.p;
    const T* pf = a.p + H;
    const T* po = a.p + 2 * H;
    const Vec<T> one(T(1));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* act = a.act + r * 4 * H;
      const T* c = a.c + r * H;
      const T* cp = a.cp + r * H;
      const T* dh = a.dh + r * H;
      T* dc = a.dc + r * H;
      T* dg = a.dG + r * 4 * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> i = vload(act + j, n), f = vload(act + H + j, n);
        Vec<T> g = vload(act + 2 * H + j, n), o = vload(act + 3 * H + j, n);
        Vec<T> cv = vload(c + j, n), cpv = vload(cp + j, n);
        Vec<T> tc = vtanh(cv);
        Vec<T> d = vload(dh + j, n);
        Vec<T> dpo = d * tc * o * (one - o);
        Vec<T> dct = vload(dc + j, n) + d * o * (one - tc * tc) + dpo * vload(po + j, n);
        Vec<T> dpi = dct * g * i * (one - i);
        Vec<T> dpf = dct * cpv * f * (one - f);
        vstore(dg + j, dpi, n);
        vstore(dg + H + j, dpf, n);
        vstore(dg + 2 * H + j, dct * i * (one - g * g), n);
        vstore(dg + 3 * H + j, dpo, n);
        vstore(dc + j, dct * f + dpi * vload(pi + j, n) + dpf * vload(pf + j, n), n);
        T* acc = a.acc;
        vstore(acc + j, vload(acc + j, n) + dpi * cpv, n);
        vstore(acc + H + j, vload(acc + H + j, n) + dpf * cpv, n);
        vstore(acc + 2 * H + j, vload(acc + 2 * H + j, n) + dpo * cv, n);
      });
    }
  }
};

// torch.nn.GRU: r, z, n; n = tanh(X_n + r (S_n + b_hn)); h = n + z (h_prev - n)
// (extra = b_hn, H). Saved: r, z, n, hn = S_n + b_hn.
struct Gru {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = false;
  static constexpr bool kOutputIsH = true;
  static constexpr bool kDirect = true;
  static int64_t gates(int64_t H, int64_t) { return 3 * H; }
  static int64_t rec(int64_t H, int64_t) { return 3 * H; }
  static int64_t saved(int64_t H, int64_t) { return 4 * H; }
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t H) { return H; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.H;
    const T* bhn = a.p;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 3 * H;
      const T* xp = a.X + r * 3 * H;
      const T* hp = a.hp + r * H;
      T* act = a.act + r * 4 * H;
      T* h = a.h + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> rv = sigmoid(vload(xp + j, n) + vload(s + j, n));
        Vec<T> z = sigmoid(vload(xp + H + j, n) + vload(s + H + j, n));
        Vec<T> hn = vload(s + 2 * H + j, n) + vload(bhn + j, n);
        Vec<T> nv = vtanh(vload(xp + 2 * H + j, n) + rv * hn);
        vstore(h + j, nv + z * (vload(hp + j, n) - nv), n);
        vstore(act + j, rv, n);
        vstore(act + H + j, z, n);
        vstore(act + 2 * H + j, nv, n);
        vstore(act + 3 * H + j, hn, n);
      });
    }
  }

  // dn = dh (1 - z); dz = dh (h_prev - n); direct dh_{t-1} = dh z; dpre_n = dn (1 - n^2)
  // (input side), d(hn) = dpre_n r (GEMM side, and db_hn), dr = dpre_n hn
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.H;
    const Vec<T> one(T(1));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* act = a.act + r * 4 * H;
      const T* hp = a.hp + r * H;
      const T* dh = a.dh + r * H;
      T* dg = a.dG + r * 3 * H;
      T* dx = a.dX + r * 3 * H;
      T* direct = a.direct + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> rv = vload(act + j, n), z = vload(act + H + j, n);
        Vec<T> nv = vload(act + 2 * H + j, n), hn = vload(act + 3 * H + j, n);
        Vec<T> d = vload(dh + j, n);
        Vec<T> dpn = d * (one - z) * (one - nv * nv);
        Vec<T> dhn = dpn * rv;
        Vec<T> dpr = dpn * hn * rv * (one - rv);
        Vec<T> dpz = d * (vload(hp + j, n) - nv) * z * (one - z);
        vstore(dg + j, dpr, n);
        vstore(dg + H + j, dpz, n);
        vstore(dg + 2 * H + j, dhn, n);
        vstore(dx + j, dpr, n);
        vstore(dx + H + j, dpz, n);
        vstore(dx + 2 * H + j, dpn, n);
        vstore(direct + j, d * z, n);
        vstore(a.acc + j, vload(a.acc + j, n) + dhn, n);
      });
    }
  }
};

// IndRNN: h = relu(x W^T + b + u (h_prev * mask)); no GEMM (extra = u, H)
struct IndRnn {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr bool kOutputIsH = true;
  static constexpr bool kDirect = false;
  static int64_t gates(int64_t H, int64_t) { return H; }
  static int64_t rec(int64_t, int64_t) { return 0; }
  static int64_t saved(int64_t, int64_t) { return 0; }
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t H) { return H; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.H;
    const T* u = a.p;
    const Vec<T> zero(T(0));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * H;
      const T* hr = a.hr + r * H;
      T* h = a.h + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> v = vload(s + j, n) + vload(u + j, n) * vload(hr + j, n);
        vstore(h + j, at::vec::maximum(v, zero), n);
      });
    }
  }

  // dpre = dh [h > 0]; d(h_prev * mask) = dpre u; du += dpre (h_prev * mask)
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.H;
    const T* u = a.p;
    const Vec<T> zero(T(0));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* h = a.h + r * H;
      const T* hr = a.hr + r * H;
      const T* dh = a.dh + r * H;
      T* dg = a.dX + r * H;
      T* dhr = a.dhr + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> dpre = Vec<T>::blendv(zero, vload(dh + j, n), vload(h + j, n) > zero);
        vstore(dg + j, dpre, n);
        vstore(dhr + j, dpre * vload(u + j, n), n);
        vstore(a.acc + j, vload(a.acc + j, n) + dpre * vload(hr + j, n), n);
      });
    }
  }
};

// UGRNN: blocks c, g; c = tanh, g = sigma; h = c + g (h_prev - c). Saved: c, g.
struct Ugrnn {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr bool kOutputIsH = true;
  static constexpr bool kDirect = true;
  static int64_t gates(int64_t H, int64_t) { return 2 * H; }
  static int64_t rec(int64_t H, int64_t) { return 2 * H; }
  static int64_t saved(int64_t H, int64_t) { return 2 * H; }
  static int64_t out(int64_t H, int64_t) { return H; }
  static int64_t extra(int64_t) { return 0; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.H;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * 2 * H;
      const T* hp = a.hp + r * H;
      T* act = a.act + r * 2 * H;
      T* h = a.h + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> c = vtanh(vload(s + j, n));
        Vec<T> g = sigmoid(vload(s + H + j, n));
        vstore(h + j, c + g * (vload(hp + j, n) - c), n);
        vstore(act + j, c, n);
        vstore(act + H + j, g, n);
      });
    }
  }

  // dc = dh (1 - g); dg = dh (h_prev - c); direct dh_{t-1} = dh g
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.H;
    const Vec<T> one(T(1));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* act = a.act + r * 2 * H;
      const T* hp = a.hp + r * H;
      const T* dh = a.dh + r * H;
      T* dg = a.dG + r * 2 * H;
      T* direct = a.direct + r * H;
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> c = vload(act + j, n), g = vload(act + H + j, n);
        Vec<T> d = vload(dh + j, n);
        vstore(dg + j, d * (one - g) * (one - c * c), n);
        vstore(dg + H + j, d * (vload(hp + j, n) - c) * g * (one - g), n);
        vstore(direct + j, d * g, n);
      });
    }
  }
};

// Intersection RNN: blocks g_y (I), g_h (H), y_in (I), h_in (H); y = y_in + g_y (x - y_in),
// h = h_in + g_h (h_prev - h_in). The output y (width I) is not the state.
struct Intersection {
  static constexpr int kStates = 1;
  static constexpr bool kInputInS = true;
  static constexpr bool kOutputIsH = false;
  static constexpr bool kDirect = true;
  static int64_t gates(int64_t H, int64_t I) { return 2 * I + 2 * H; }
  static int64_t rec(int64_t H, int64_t I) { return 2 * I + 2 * H; }
  static int64_t saved(int64_t H, int64_t I) { return 2 * I + 2 * H; }
  static int64_t out(int64_t, int64_t I) { return I; }
  static int64_t extra(int64_t) { return 0; }

  template <typename T>
  static void fwd(const FwdArgs<T>& a) {
    const int64_t H = a.H, I = a.I, G = 2 * I + 2 * H;
    for (int64_t r = 0; r < a.R; ++r) {
      const T* s = a.S + r * G;
      const T* x = a.x + r * I;
      const T* hp = a.hp + r * H;
      T* act = a.act + r * G;
      T* y = a.y + r * I;
      T* h = a.h + r * H;
      for_lanes<T>(I, [&](int64_t j, int64_t n) {
        Vec<T> gy = sigmoid(vload(s + j, n));
        Vec<T> yin = vtanh(vload(s + I + H + j, n));
        vstore(y + j, yin + gy * (vload(x + j, n) - yin), n);
        vstore(act + j, gy, n);
        vstore(act + I + H + j, yin, n);
      });
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> gh = sigmoid(vload(s + I + j, n));
        Vec<T> hin = vtanh(vload(s + 2 * I + H + j, n));
        vstore(h + j, hin + gh * (vload(hp + j, n) - hin), n);
        vstore(act + I + j, gh, n);
        vstore(act + 2 * I + H + j, hin, n);
      });
    }
  }

  // y path: dgy = dy (x - y_in), dy_in = dy (1 - g_y), direct dx = dy g_y;
  // h path: dgh = dh (h_prev - h_in), dh_in = dh (1 - g_h), direct dh_{t-1} = dh g_h
  template <typename T>
  static void bwd(const BwdArgs<T>& a) {
    const int64_t H = a.H, I = a.I, G = 2 * I + 2 * H;
    const Vec<T> one(T(1)), zero(T(0));
    for (int64_t r = 0; r < a.R; ++r) {
      const T* act = a.act + r * G;
      const T* x = a.x + r * I;
      const T* hp = a.hp + r * H;
      const T* dh = a.dh + r * H;
      const T* dy = a.dy ? a.dy + r * I : nullptr;
      T* dg = a.dG + r * G;
      T* dx = a.dx ? a.dx + r * I : nullptr;
      T* direct = a.direct + r * H;
      for_lanes<T>(I, [&](int64_t j, int64_t n) {
        Vec<T> gy = vload(act + j, n), yin = vload(act + I + H + j, n);
        Vec<T> d = dy ? vload(dy + j, n) : zero;
        vstore(dg + j, d * (vload(x + j, n) - yin) * gy * (one - gy), n);
        vstore(dg + I + H + j, d * (one - gy) * (one - yin * yin), n);
        if (dx) vstore(dx + j, d * gy, n);
      });
      for_lanes<T>(H, [&](int64_t j, int64_t n) {
        Vec<T> gh = vload(act + I + j, n), hin = vload(act + 2 * I + H + j, n);
        Vec<T> d = vload(dh + j, n);
        vstore(dg + I + j, d * (vload(hp + j, n) - hin) * gh * (one - gh), n);
        vstore(dg + 2 * I + H + j, d * (one - gh) * (one - hin * hin), n);
        vstore(direct + j, d * gh, n);
      });
    }
  }
};

// ---------------------------------------------------------------------------------------
// the drivers: sharding, the time loops, the GEMMs, the chunked weight gradients

struct Shards {
  int64_t n;
  int64_t begin(int64_t s, int64_t B) const { return s * B / n; }
};

Shards make_shards(int64_t B) {
  int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  int64_t n = std::max<int64_t>(1, std::min<int64_t>(threads, B / g_min_shard_rows));
  return Shards{n};
}

// a (T, B, W) sequence buffer (full), or a two-slot ring per shard (no backward needed)
template <typename T>
struct Seq {
  T* base = nullptr;  // already offset to the shard's first row
  int64_t stride = 0; // elements between consecutive steps
  bool ring = false;
  T* at(int64_t t) const { return base + (ring ? (t & 1) : t) * stride; }
};

// input pre-activations of R rows: out (R, ldo) = b + x W_ih^T (+ nothing else)
template <typename T>
void input_preact(int64_t R, int64_t I, int64_t G, const T* x, const T* w_ih, const T* w_ih_t,
                  const T* b, T* out, int64_t ldo) {
  if (I <= kSmallInput) {
    for (int64_t r = 0; r < R; ++r) {
      const T* xr = x + r * I;
      T* o = out + r * ldo;
      for_lanes<T>(G, [&](int64_t j, int64_t n) {
        Vec<T> v = vload(b + j, n);
        for (int64_t i = 0; i < I; ++i) v = at::vec::fmadd(Vec<T>(xr[i]), vload(w_ih_t + i * G + j, n), v);
        vstore(o + j, v, n);
      });
    }
  } else {
    for (int64_t r = 0; r < R; ++r) std::copy(b, b + G, out + r * ldo);
    mm_nt<T>(R, G, I, x, I, w_ih, I, T(1), out, ldo);
  }
}

Tensor transposed(const Tensor& w) {  // (G, I) -> contiguous (I, G)
  return w.t().contiguous();
}

template <typename T>
const T* ptr_or_null(const c10::optional<Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->data_ptr<T>() : nullptr;
}

// one cell as the drivers see it: sizes, flags and its two element-wise steps. The drivers
// are compiled once per dtype (not per cell), which keeps the build short.
template <typename T>
struct Kernel {
  int states;        // 1: (h,), 2: (h, c)
  bool input_in_s;   // the input pre-activations accumulate into the GEMM output
  bool output_is_h;  // y_t = h_t
  bool direct;       // backward writes a part of dh_{t-1} that bypasses the GEMM and mask
  int64_t G, Gr, Sv, O, E;  // widths: gates, GEMM output, saved, output; extra parameters
  void (*fwd)(const FwdArgs<T>&);
  void (*bwd)(const BwdArgs<T>&);
};

template <class Cell, typename T>
Kernel<T> kernel_of(int64_t H, int64_t I) {
  Kernel<T> k;
  k.states = Cell::kStates;
  k.input_in_s = Cell::kInputInS;
  k.output_is_h = Cell::kOutputIsH;
  k.direct = Cell::kDirect;
  k.G = Cell::gates(H, I);
  k.Gr = Cell::rec(H, I);
  k.Sv = Cell::saved(H, I);
  k.O = Cell::out(H, I);
  k.E = Cell::extra(H);
  k.fwd = &Cell::template fwd<T>;
  k.bwd = &Cell::template bwd<T>;
  return k;
}

struct Dims {
  int64_t T_, B, I, G, Gr, Sv, O, E;
};

template <typename T>
Dims dims_of(const Kernel<T>& k, const Tensor& x) {
  return Dims{x.size(0), x.size(1), x.size(2), k.G, k.Gr, k.Sv, k.O, k.E};
}

// forward: returns [ys, h_T, (c_T), saved...]; saved = [h sequence if the output is not h]
// + [c sequence if the cell has c] + [activations if any], all (T, B, width)
template <typename T>
std::vector<Tensor> forward_impl(const Kernel<T>& k, const Tensor& x, const Tensor& w_ih, const Tensor& b,
                                 const Tensor& w_hh, const Tensor& extra,
                                 const std::vector<Tensor>& state,
                                 const c10::optional<Tensor>& mask_opt, bool train) {
  const int64_t H = state[0].size(1);
  const Dims d = dims_of(k, x);
  const auto opts = x.options();
  Tensor ys = big_empty({d.T_, d.B, d.O}, opts);
  Tensor hseq = k.output_is_h ? ys : big_empty({train ? d.T_ : 0, d.B, H}, opts);
  Tensor cseq = big_empty({(k.states == 2 && train) ? d.T_ : 0, d.B, H}, opts);
  Tensor act = big_empty({train ? d.T_ : 0, d.B, d.Sv}, opts);
  Tensor w_ih_t = transposed(w_ih);
  const Shards sh = make_shards(d.B);
  const int64_t Rmax = (d.B + sh.n - 1) / sh.n;
  // per-shard scratch: S, X, hr (2 slots), h ring, c ring, act scratch
  // S holds the GEMM output, and the input pre-activations too for kInputInS cells
  const int64_t Sw = k.input_in_s ? std::max(d.G, d.Gr) : d.Gr;
  const int64_t per_shard = Rmax * (Sw + d.G + 2 * H + 2 * H + 2 * H + d.Sv);
  Tensor scratch = at::empty({sh.n, per_shard}, opts);
  Tensor hT = at::empty({d.B, H}, opts);
  Tensor cT = at::empty({k.states == 2 ? d.B : 0, H}, opts);

  const T* X = x.data_ptr<T>();
  const T* Wih = w_ih.data_ptr<T>();
  const T* WihT = w_ih_t.data_ptr<T>();
  const T* bias = b.data_ptr<T>();
  const T* Whh = d.Gr ? w_hh.data_ptr<T>() : nullptr;
  const T* P = d.E ? extra.data_ptr<T>() : nullptr;
  const T* h0 = state[0].data_ptr<T>();
  const T* c0 = k.states == 2 ? state[1].data_ptr<T>() : nullptr;
  const T* M = ptr_or_null<T>(mask_opt);

  at::parallel_for(0, sh.n, 1, [&](int64_t s_begin, int64_t s_end) {
    FlushDenormals ftz;
    SingleThreadBlas one_thread;
    for (int64_t s = s_begin; s < s_end; ++s) {
      Timer timer;
      const int64_t b0 = sh.begin(s, d.B), R = sh.begin(s + 1, d.B) - b0;
      T* sp = scratch.data_ptr<T>() + s * per_shard;
      T* S = sp;
      T* Xs = S + Rmax * Sw;
      T* hr_buf = Xs + Rmax * d.G;             // 2 slots
      T* h_ring = hr_buf + 2 * Rmax * H;       // 2 slots
      T* c_ring = h_ring + 2 * Rmax * H;       // 2 slots
      T* act_tmp = c_ring + 2 * Rmax * H;
      T* S_in = k.input_in_s ? S : Xs;      // where the input pre-activations go
      const int64_t ld_in = k.input_in_s ? Sw : d.G;
      const T* mask = M ? M + b0 * H : nullptr;

      Seq<T> hs, cs, as, yq;
      yq = Seq<T>{ys.data_ptr<T>() + b0 * d.O, d.B * d.O, false};
      if (k.output_is_h) {
        hs = yq;
      } else if (train) {
        hs = Seq<T>{hseq.data_ptr<T>() + b0 * H, d.B * H, false};
      } else {
        hs = Seq<T>{h_ring, R * H, true};
      }
      if (train) {
        cs = Seq<T>{cseq.data_ptr<T>() + b0 * H, d.B * H, false};
        as = Seq<T>{act.data_ptr<T>() + b0 * d.Sv, d.B * d.Sv, false};
      } else {
        cs = Seq<T>{c_ring, R * H, true};
        as = Seq<T>{act_tmp, 0, false};
      }
      const T* h_first = h0 + b0 * H;
      if (mask) {
        for (int64_t k = 0; k < R * H; ++k) hr_buf[k] = h_first[k] * mask[k];
      }
      // S (R x Gr) = hr W_hh^T: column-major S^T = op(W) hr^T with op = transpose
      const StepGemm<T> rec_gemm('T', d.Gr, H, Whh, H, R);
      timer.start();
      for (int64_t t = 0; t < d.T_; ++t) {
        const T* hp = t ? hs.at(t - 1) : h_first;
        const T* cp = k.states == 2 ? (t ? cs.at(t - 1) : c0 + b0 * H) : nullptr;
        const T* hr = mask ? hr_buf + (t & 1) * Rmax * H : hp;
        const T* xt = X + (t * d.B + b0) * d.I;
        input_preact<T>(R, d.I, d.G, xt, Wih, WihT, bias, S_in, ld_in);
        timer.lap(kFwdInput);
        if (d.Gr) rec_gemm.run(R, hr, H, k.input_in_s ? T(1) : T(0), S, d.Gr);
        timer.lap(kFwdGemm);
        FwdArgs<T> a{R, H, d.I, S, Xs, xt, hp, hr, cp, P,
                     hs.at(t), k.states == 2 ? cs.at(t) : nullptr, yq.at(t), as.at(t)};
        k.fwd(a);
        if (mask) {
          T* hr_next = hr_buf + ((t + 1) & 1) * Rmax * H;
          const T* hn = hs.at(t);
          for_lanes<T>(R * H, [&](int64_t j, int64_t n) {
            vstore(hr_next + j, vload(hn + j, n) * vload(mask + j, n), n);
          });
        }
        timer.lap(kFwdElem);
      }
      const T* h_last = d.T_ ? hs.at(d.T_ - 1) : h_first;
      std::copy(h_last, h_last + R * H, hT.data_ptr<T>() + b0 * H);
      if (k.states == 2) {
        const T* c_last = d.T_ ? cs.at(d.T_ - 1) : c0 + b0 * H;
        std::copy(c_last, c_last + R * H, cT.data_ptr<T>() + b0 * H);
      }
      timer.commit();
    }
  });

  std::vector<Tensor> out{ys, hT};
  if (k.states == 2) out.push_back(cT);
  if (!k.output_is_h) out.push_back(hseq);
  if (k.states == 2) out.push_back(cseq);
  if (d.Sv) out.push_back(act);
  return out;
}

// backward: returns [dx (empty unless need_dx), dW_ih, db, dW_hh (empty without a GEMM),
// dextra (empty without extras), dh_0, (dc_0)]
template <typename T>
std::vector<Tensor> backward_impl(const Kernel<T>& k, const Tensor& x, const Tensor& w_ih, const Tensor& w_hh,
                                  const Tensor& extra, const std::vector<Tensor>& state,
                                  const c10::optional<Tensor>& mask_opt, const Tensor& ys,
                                  const std::vector<Tensor>& saved,
                                  const c10::optional<Tensor>& dys_opt,
                                  const std::vector<c10::optional<Tensor>>& dstate,
                                  bool need_dx) {
  const int64_t H = state[0].size(1);
  const Dims d = dims_of(k, x);
  const auto opts = x.options();
  size_t next = 0;
  const Tensor hseq = k.output_is_h ? ys : saved.at(next++);
  const Tensor cseq = k.states == 2 ? saved.at(next++) : Tensor();
  const Tensor act = d.Sv ? saved.at(next++) : Tensor();

  const Shards sh = make_shards(d.B);
  const int64_t Rmax = (d.B + sh.n - 1) / sh.n;
  const int64_t K = std::max<int64_t>(1, g_chunk_rows / std::max<int64_t>(1, Rmax));
  // [dW_ih | db]: for tiny inputs accumulated in a vector loop right after each step's
  // element-wise pass, laid out (I + 1, G); otherwise one GEMM per chunk with x and a ones
  // column as the right operand, laid out (G, I + 1)
  const bool small_in = d.I <= kSmallInput;
  const int64_t Ib = d.I + 1;
  const bool separate_dX = !k.input_in_s || d.Gr == 0;
  const int64_t dX_width = separate_dX ? d.G : 0;
  // per shard: dh, dhr, direct, dc, chunk dG, chunk dX, chunk hr, chunk x
  const int64_t per_shard =
      Rmax * (4 * H) + K * Rmax * (d.Gr + dX_width + (d.Gr ? H : 0) + Ib);
  Tensor scratch = at::empty({sh.n, per_shard}, opts);
  Tensor dWhh_part = at::zeros({sh.n, d.Gr, H}, opts);
  Tensor dWin_part = at::zeros({sh.n, d.G, Ib}, opts);
  Tensor acc_part = at::zeros({sh.n, std::max<int64_t>(d.E, 1)}, opts);
  Tensor dx = need_dx ? big_empty({d.T_, d.B, d.I}, opts) : at::empty({0}, opts);
  Tensor dh0 = at::empty({d.B, H}, opts);
  Tensor dc0 = at::empty({k.states == 2 ? d.B : 0, H}, opts);

  const T* X = x.data_ptr<T>();
  const T* Wih = w_ih.data_ptr<T>();
  const T* Whh = d.Gr ? w_hh.data_ptr<T>() : nullptr;
  const T* P = d.E ? extra.data_ptr<T>() : nullptr;
  const T* h0 = state[0].data_ptr<T>();
  const T* c0 = k.states == 2 ? state[1].data_ptr<T>() : nullptr;
  const T* M = ptr_or_null<T>(mask_opt);
  const T* DYS = ptr_or_null<T>(dys_opt);
  const T* DHT = ptr_or_null<T>(dstate.at(0));
  const T* DCT = k.states == 2 ? ptr_or_null<T>(dstate.at(1)) : nullptr;
  const T* HS = hseq.data_ptr<T>();
  const T* CS = k.states == 2 ? cseq.data_ptr<T>() : nullptr;
  const T* AS = d.Sv ? act.data_ptr<T>() : nullptr;

  at::parallel_for(0, sh.n, 1, [&](int64_t s_begin, int64_t s_end) {
    FlushDenormals ftz;
    SingleThreadBlas one_thread;
    for (int64_t s = s_begin; s < s_end; ++s) {
      Timer timer;
      const int64_t b0 = sh.begin(s, d.B), R = sh.begin(s + 1, d.B) - b0;
      T* sp = scratch.data_ptr<T>() + s * per_shard;
      T* dh = sp;
      T* dhr = dh + Rmax * H;
      T* direct = dhr + Rmax * H;
      T* dc = direct + Rmax * H;
      T* cG = dc + Rmax * H;                     // (K, Rmax, Gr)
      T* cX = cG + K * Rmax * d.Gr;              // (K, Rmax, G) when separate
      T* cH = cX + K * Rmax * dX_width;          // (K, Rmax, H)
      T* cI = cH + K * Rmax * (d.Gr ? H : 0);    // (K, Rmax, Ib)
      T* dWhh = dWhh_part.data_ptr<T>() + s * d.Gr * H;
      T* dWin = dWin_part.data_ptr<T>() + s * d.G * Ib;
      T* acc = acc_part.data_ptr<T>() + s * std::max<int64_t>(d.E, 1);
      const T* mask = M ? M + b0 * H : nullptr;
      const T* h_first = h0 + b0 * H;
      const T* c_first = c0 ? c0 + b0 * H : nullptr;
      auto hrow = [&](int64_t t) { return t >= 0 ? HS + (t * d.B + b0) * H : h_first; };
      auto crow = [&](int64_t t) { return t >= 0 ? CS + (t * d.B + b0) * H : c_first; };

      for (int64_t r = 0; r < R; ++r) cI[r * Ib + d.I] = T(1);  // ones column, every slot
      for (int64_t slot = 1; slot < K; ++slot) {
        for (int64_t r = 0; r < R; ++r) cI[(slot * R + r) * Ib + d.I] = T(1);
      }
      if (k.states == 2) {
        if (DCT) {
          std::copy(DCT + b0 * H, DCT + (b0 + R) * H, dc);
        } else {
          std::fill(dc, dc + R * H, T(0));
        }
      }
      // dhr (R x H) = dG W_hh: column-major dhr^T = W^T dG^T, W^T being W's own memory
      const StepGemm<T> rec_gemm('N', H, d.Gr, Whh, H, R);
      int64_t slot = 0;
      auto flush = [&]() {
        const int64_t rows = slot * R;
        if (rows == 0) return;
        if (d.Gr) mm_tn<T>(d.Gr, H, rows, cG, d.Gr, cH, H, T(1), dWhh, H);
        if (!small_in) mm_tn<T>(d.G, Ib, rows, separate_dX ? cX : cG, d.G, cI, Ib, T(1), dWin, Ib);
        slot = 0;
      };
      timer.start();
      for (int64_t t = d.T_ - 1; t >= 0; --t) {
        // dh_t = dys_t (when y is h) + [t = T-1] dh_T + [t < T-1] (mask dhr + direct)
        const T* dyt = DYS ? DYS + (t * d.B + b0) * d.O : nullptr;
        const bool last = t == d.T_ - 1;
        const T* dh_in = last ? (DHT ? DHT + b0 * H : nullptr) : nullptr;
        const T* dy_h = k.output_is_h ? dyt : nullptr;
        const bool direct_in = k.direct;
        for_lanes<T>(R * H, [&](int64_t j, int64_t n) {
          Vec<T> v(T(0));
          if (dy_h) v = v + vload(dy_h + j, n);
          if (last) {
            if (dh_in) v = v + vload(dh_in + j, n);
          } else {
            Vec<T> rec = vload(dhr + j, n);
            if (mask) rec = rec * vload(mask + j, n);
            v = v + rec;
            if (direct_in) v = v + vload(direct + j, n);
          }
          vstore(dh + j, v, n);
        });
        const T* xt = X + (t * d.B + b0) * d.I;
        T* dG = cG + slot * R * d.Gr;
        T* dXt = separate_dX ? cX + slot * R * d.G : dG;
        T* dxt = need_dx ? dx.data_ptr<T>() + (t * d.B + b0) * d.I : nullptr;
        // h_{t-1} * mask goes into the chunk (GEMM input of step t)
        T* hr = d.Gr ? cH + slot * R * H : dhr;  // IndRNN: computed in place below
        const T* hp = hrow(t - 1);
        T* hr_ind = nullptr;
        if (d.Gr) {
          if (mask) {
            for_lanes<T>(R * H, [&](int64_t j, int64_t n) {
              vstore(hr + j, vload(hp + j, n) * vload(mask + j, n), n);
            });
          } else {
            std::copy(hp, hp + R * H, hr);
          }
        } else if (mask) {
          // IndRNN with a mask: h_{t-1} * mask in the direct buffer (unused by IndRNN)
          hr_ind = direct;
          for_lanes<T>(R * H, [&](int64_t j, int64_t n) {
            vstore(hr_ind + j, vload(hp + j, n) * vload(mask + j, n), n);
          });
        }
        timer.lap(kBwdCopy);
        BwdArgs<T> a{R,
                     H,
                     d.I,
                     dh,
                     k.output_is_h ? nullptr : dyt,
                     dc,
                     AS ? AS + (t * d.B + b0) * d.Sv : nullptr,
                     hrow(t),
                     hp,
                     d.Gr ? hr : (mask ? hr_ind : hp),
                     k.states == 2 ? crow(t) : nullptr,
                     k.states == 2 ? crow(t - 1) : nullptr,
                     xt,
                     P,
                     dG,
                     dXt,
                     direct,
                     dhr,
                     k.output_is_h ? nullptr : dxt,
                     acc};
        k.bwd(a);
        if (small_in) {  // dW_ih[:, i] += sum_r x[r, i] dX[r, :], db += sum_r dX[r, :]
          for_lanes<T>(d.G, [&](int64_t j, int64_t n) {
            Vec<T> sw[kSmallInput + 1];
            for (int64_t i = 0; i <= d.I; ++i) sw[i] = vload(dWin + i * d.G + j, n);
            for (int64_t r = 0; r < R; ++r) {
              const Vec<T> v = vload(dXt + r * d.G + j, n);
              for (int64_t i = 0; i < d.I; ++i) {
                sw[i] = at::vec::fmadd(Vec<T>(xt[r * d.I + i]), v, sw[i]);
              }
              sw[d.I] = sw[d.I] + v;
            }
            for (int64_t i = 0; i <= d.I; ++i) vstore(dWin + i * d.G + j, sw[i], n);
          });
        }
        timer.lap(kBwdElem);
        if (d.Gr) rec_gemm.run(R, dG, d.Gr, T(0), dhr, H);
        if (dxt) mm_nn<T>(R, d.I, d.G, dXt, d.G, Wih, d.I, k.output_is_h ? T(0) : T(1), dxt, d.I);
        timer.lap(kBwdGemm);
        if (!small_in) {
          T* xi = cI + slot * R * Ib;
          for (int64_t r = 0; r < R; ++r) std::copy(xt + r * d.I, xt + (r + 1) * d.I, xi + r * Ib);
        }
        ++slot;
        if (slot == K) flush();
        timer.lap(kBwdFlush);
      }
      flush();
      // dh_0 = mask dhr + direct (or dh_T when T = 0); dc_0 = dc
      T* dh0p = dh0.data_ptr<T>() + b0 * H;
      if (d.T_ == 0) {
        for (int64_t j = 0; j < R * H; ++j) dh0p[j] = DHT ? DHT[b0 * H + j] : T(0);
      } else {
        for_lanes<T>(R * H, [&](int64_t j, int64_t n) {
          Vec<T> rec = vload(dhr + j, n);
          if (mask) rec = rec * vload(mask + j, n);
          if (k.direct) rec = rec + vload(direct + j, n);
          vstore(dh0p + j, rec, n);
        });
      }
      if (k.states == 2) std::copy(dc, dc + R * H, dc0.data_ptr<T>() + b0 * H);
      timer.commit();
    }
  });

  // sum the shards' partial gradients (in shard order: deterministic for a thread count)
  Tensor dW_ih = at::empty({d.G, d.I}, opts);
  Tensor db = at::empty({d.G}, opts);
  Tensor dW_hh = at::empty({d.Gr, d.Gr ? H : 0}, opts);
  Tensor dextra = at::empty({d.E}, opts);
  {
    const T* win = dWin_part.data_ptr<T>();
    T* wi = dW_ih.data_ptr<T>();
    T* bb = db.data_ptr<T>();
    for (int64_t g = 0; g < d.G; ++g) {
      for (int64_t i = 0; i <= d.I; ++i) {
        T v = 0;
        for (int64_t s = 0; s < sh.n; ++s) {
          v += small_in ? win[(s * Ib + i) * d.G + g] : win[(s * d.G + g) * Ib + i];
        }
        if (i < d.I) {
          wi[g * d.I + i] = v;
        } else {
          bb[g] = v;
        }
      }
    }
    const T* whp = dWhh_part.data_ptr<T>();
    T* wh = dW_hh.data_ptr<T>();
    for (int64_t e = 0; e < d.Gr * H; ++e) {
      T v = 0;
      for (int64_t s = 0; s < sh.n; ++s) v += whp[s * d.Gr * H + e];
      wh[e] = v;
    }
    const T* ap = acc_part.data_ptr<T>();
    T* de = dextra.data_ptr<T>();
    const int64_t Ew = std::max<int64_t>(d.E, 1);
    for (int64_t e = 0; e < d.E; ++e) {
      T v = 0;
      for (int64_t s = 0; s < sh.n; ++s) v += ap[s * Ew + e];
      de[e] = v;
    }
  }
  std::vector<Tensor> out{dx, dW_ih, db, dW_hh, dextra, dh0};
  if (k.states == 2) out.push_back(dc0);
  return out;
}

// ---------------------------------------------------------------------------------------
// dispatch by cell name and dtype

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
  TORCH_CHECK(!state.empty() && state[0].dim() == 2, "state[0] must be (B, H)");
  check_dense(x, "x");
  for (const Tensor& s : state) {
    check_dense(s, "the state");
    TORCH_CHECK(s.scalar_type() == x.scalar_type() && s.size(0) == x.size(1),
                "the state must be (B, H) with x's dtype");
  }
}

template <typename F>
std::vector<Tensor> dispatch_cell(const std::string& cell, const F& f) {
  if (cell == "elman_tanh") return f(Elman<false>{});
  if (cell == "elman_relu") return f(Elman<true>{});
  if (cell == "lstm") return f(Lstm{});
  if (cell == "peephole") return f(Peephole{});
  if (cell == "gru") return f(Gru{});
  if (cell == "indrnn") return f(IndRnn{});
  if (cell == "ugrnn") return f(Ugrnn{});
  if (cell == "intersection") return f(Intersection{});
  TORCH_CHECK(false, "unknown fused cell '", cell,
              "'; valid: elman_tanh, elman_relu, lstm, peephole, gru, indrnn, ugrnn, "
              "intersection");
  return {};
}

std::vector<Tensor> forward_op(const std::string& cell, const Tensor& x, const Tensor& w_ih,
                               const Tensor& b, const Tensor& w_hh, const Tensor& extra,
                               at::TensorList state, const c10::optional<Tensor>& mask,
                               bool train) {
  std::vector<Tensor> st(state.begin(), state.end());
  check_inputs(x, st);
  for (const Tensor* t : {&w_ih, &b, &w_hh, &extra}) check_dense(*t, "the parameters");
  if (mask.has_value()) {
    check_dense(*mask, "the mask");
    TORCH_CHECK(mask->sizes() == st[0].sizes() && mask->scalar_type() == x.scalar_type(),
                "the recurrent-dropout mask must be (B, H) with x's dtype");
  }
  const int64_t H = st[0].size(1), I = x.size(2);
  return dispatch_cell(cell, [&](auto c) {
    using Cell = decltype(c);
    if (x.scalar_type() == at::kDouble) {
      return forward_impl<double>(kernel_of<Cell, double>(H, I), x, w_ih, b, w_hh, extra, st,
                                  mask, train);
    }
    return forward_impl<float>(kernel_of<Cell, float>(H, I), x, w_ih, b, w_hh, extra, st, mask,
                               train);
  });
}

std::vector<Tensor> backward_op(const std::string& cell, const Tensor& x, const Tensor& w_ih,
                                const Tensor& w_hh, const Tensor& extra, at::TensorList state,
                                const c10::optional<Tensor>& mask, const Tensor& ys,
                                at::TensorList saved, const c10::optional<Tensor>& dys,
                                const c10::List<c10::optional<Tensor>>& dstate, bool need_dx) {
  std::vector<Tensor> st(state.begin(), state.end());
  std::vector<Tensor> sv(saved.begin(), saved.end());
  std::vector<c10::optional<Tensor>> ds;
  for (size_t i = 0; i < dstate.size(); ++i) ds.push_back(dstate.get(i));
  check_inputs(x, st);
  for (const Tensor* t : {&w_ih, &w_hh, &extra, &ys}) check_dense(*t, "the inputs");
  for (const Tensor& t : sv) check_dense(t, "the saved buffers");
  if (mask.has_value()) check_dense(*mask, "the mask");
  if (dys.has_value()) check_dense(*dys, "the output gradient");
  for (const auto& d : ds) {
    if (d.has_value()) check_dense(*d, "the final-state gradient");
  }
  const int64_t H = st[0].size(1), I = x.size(2);
  return dispatch_cell(cell, [&](auto c) {
    using Cell = decltype(c);
    if (x.scalar_type() == at::kDouble) {
      return backward_impl<double>(kernel_of<Cell, double>(H, I), x, w_ih, w_hh, extra, st,
                                   mask, ys, sv, dys, ds, need_dx);
    }
    return backward_impl<float>(kernel_of<Cell, float>(H, I), x, w_ih, w_hh, extra, st, mask,
                                ys, sv, dys, ds, need_dx);
  });
}

// The recurrent GEMMs of one layer alone, sharded like the kernels: the benchmark's
// "GEMM-only" floor. Forward: S = h_{t-1} W^T per step; backward: dh_{t-1} = dG_t W per
// step and dW += dG^T h over chunks of g_chunk_rows rows (operands prepared once).
template <typename T>
void gemm_only_impl(const Tensor& h, const Tensor& w, const Tensor& dg, bool backward) {
  const int64_t T_ = h.size(0), B = h.size(1), H = h.size(2), G = w.size(0);
  const Shards sh = make_shards(B);
  const int64_t Rmax = (B + sh.n - 1) / sh.n;
  const int64_t K = std::max<int64_t>(1, g_chunk_rows / Rmax);
  const int64_t per_shard = Rmax * (G + H) + K * Rmax * (G + H) + G * H;
  Tensor scratch = at::zeros({sh.n, per_shard}, h.options());
  const T* HS = h.data_ptr<T>();
  const T* W = w.data_ptr<T>();
  const T* DG = dg.data_ptr<T>();
  at::parallel_for(0, sh.n, 1, [&](int64_t s_begin, int64_t s_end) {
    FlushDenormals ftz;
    SingleThreadBlas one_thread;
    for (int64_t s = s_begin; s < s_end; ++s) {
      const int64_t b0 = sh.begin(s, B), R = sh.begin(s + 1, B) - b0;
      T* S = scratch.data_ptr<T>() + s * per_shard;
      T* dh = S + Rmax * G;
      T* cG = dh + Rmax * H;
      T* cH = cG + K * Rmax * G;
      T* dW = cH + K * Rmax * H;
      if (!backward) {
        const StepGemm<T> fwd('T', G, H, W, H, R);
        for (int64_t t = 0; t < T_; ++t) fwd.run(R, HS + (t * B + b0) * H, H, T(0), S, G);
        continue;
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

// Flush denormals (FTZ/DAZ) on the calling thread AND on every thread of torch's intra-op
// pool, or restore IEEE behaviour (torch.set_flush_denormal only sets the calling thread,
// so torch's own multi-threaded kernels keep computing on denormals). For the benchmark's
// like-for-like comparison; returns false where the CPU has no such mode.
bool flush_denormal_op(bool enable) {
#if defined(__x86_64__) || defined(_M_X64)
  auto set = [enable]() {
    const unsigned int csr = _mm_getcsr();
    _mm_setcsr(enable ? (csr | 0x8040u) : (csr & ~0x8040u));
  };
  set();
  const int64_t n = at::get_num_threads();
  at::parallel_for(0, n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) set();
  });
  return true;
#else
  return false;
#endif
}

// timings per phase since the last call (seconds summed over shards); enables profiling
std::vector<double> profile_op(bool enable) {
  std::lock_guard<std::mutex> lock(g_times_mutex);
  std::vector<double> out(g_times.begin(), g_times.end());
  g_times.fill(0.0);
  g_profile = enable;
  return out;
}

// tuning knobs for measurements: chunk rows of the weight-gradient GEMM, min shard rows
std::vector<int64_t> config_op(int64_t chunk_rows, int64_t min_shard_rows, int64_t packed) {
  if (chunk_rows > 0) g_chunk_rows = chunk_rows;
  if (min_shard_rows > 0) g_min_shard_rows = min_shard_rows;
  if (packed >= 0) g_use_packed = packed != 0;
  return {g_chunk_rows, g_min_shard_rows, g_use_packed ? 1 : 0};
}

}  // namespace
}  // namespace rnnzoo_fused

TORCH_LIBRARY(rnnzoo_fused, m) {
  m.def(
      "forward(str cell, Tensor x, Tensor w_ih, Tensor b, Tensor w_hh, Tensor extra, "
      "Tensor[] state, Tensor? mask, bool train) -> Tensor[]",
      &rnnzoo_fused::forward_op);
  m.def(
      "backward(str cell, Tensor x, Tensor w_ih, Tensor w_hh, Tensor extra, Tensor[] state, "
      "Tensor? mask, Tensor ys, Tensor[] saved, Tensor? dys, Tensor?[] dstate, bool need_dx) "
      "-> Tensor[]",
      &rnnzoo_fused::backward_op);
  m.def("gemm_only(Tensor h, Tensor w, Tensor dg, bool backward) -> ()",
        &rnnzoo_fused::gemm_only_op);
  m.def("profile(bool enable) -> float[]", &rnnzoo_fused::profile_op);
  m.def("flush_denormal(bool enable) -> bool", &rnnzoo_fused::flush_denormal_op);
  m.def("config(int chunk_rows, int min_shard_rows, int packed) -> int[]", &rnnzoo_fused::config_op);
}
