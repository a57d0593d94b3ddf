// Shared runtime of the fused kernels: BLAS calls, flush-to-zero, the buffer cache,
// profiling, tuning knobs and vector helpers. Header-only: every translation unit of the
// library includes it; the knobs and profile counters are C++17 inline variables, so all
// units share one copy.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <xmmintrin.h>
#endif

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

using at::Tensor;
template <typename T>
using Vec = at::vec::Vectorized<T>;

// ---------------------------------------------------------------------------------------
// tuning knobs (set from Python through the `config` op, for measurements and tests)

// inputs at most this wide are projected with an inline FMA loop instead of a GEMM
constexpr int64_t kSmallInput = 4;
// rows (steps x shard rows) per weight-gradient GEMM in backward
inline int64_t g_chunk_rows = 256;
// batch rows per shard: the shard layout depends on the batch size only, never on the
// thread count, so results are bit-identical for any number of threads. 64: sMNIST's
// B = 128 gives 2 shards (2 cores busy); 32-row shards measured ~7% slower per row here
inline int64_t g_shard_rows = 64;
// MKL's packed GEMM for the per-step recurrent product
inline bool g_use_packed = true;

// ---------------------------------------------------------------------------------------
// profiling: seconds per phase, summed over shards (enabled from Python for the benchmark)

enum Phase { kFwdInput, kFwdGemm, kFwdElem, kBwdElem, kBwdGemm, kBwdCopy, kBwdFlush, kPhases };
inline bool g_profile = false;
inline std::array<double, kPhases> g_times{};
inline std::mutex g_times_mutex;

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

// per-shard phase timer; commit() adds its laps to the global counters
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
// vector helpers (at::vec::Vectorized: AVX-512 / AVX2 / scalar, as built)

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

#if defined(CPU_CAPABILITY_AVX512)
inline void stream_full(float* p, const Vec<float>& v) { _mm512_stream_ps(p, v); }
inline void stream_full(double* p, const Vec<double>& v) { _mm512_stream_pd(p, v); }
#elif defined(CPU_CAPABILITY_AVX2)
inline void stream_full(float* p, const Vec<float>& v) { _mm256_stream_ps(p, v); }
inline void stream_full(double* p, const Vec<double>& v) { _mm256_stream_pd(p, v); }
#endif

// vstore past the caches (a non-temporal store: the destination line is not read first)
// where all lanes are in use and p is aligned; vstore otherwise. For big buffers written
// once per step and read back only in backward (a family's saved activations): measured
// ~20% off a memory-bound forward. End the writes with stream_fence().
template <typename T>
inline void vstream(T* p, const Vec<T>& v, int64_t n) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    constexpr uintptr_t kAlign = sizeof(T) * Vec<T>::size() - 1;
    if (n == Vec<T>::size() && (reinterpret_cast<uintptr_t>(p) & kAlign) == 0) {
      stream_full(p, v);
      return;
    }
  }
#endif
  vstore(p, v, n);
}

// orders the vstream writes before any later store (they are weakly ordered on x86)
inline void stream_fence() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_sfence();
#endif
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

// ---------------------------------------------------------------------------------------
// denormals

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

// Sets (or clears) FTZ/DAZ on the calling thread; false where the CPU has no such mode.
inline bool set_flush_denormal_here(bool enable) {
#if defined(__x86_64__) || defined(_M_X64)
  const unsigned int csr = _mm_getcsr();
  _mm_setcsr(enable ? (csr | 0x8040u) : (csr & ~0x8040u));
  return true;
#else
  (void)enable;
  return false;
#endif
}

// ---------------------------------------------------------------------------------------
// buffer cache

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
    if (void* p = reuse(bytes, capacity)) return p;
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

  // returns a buffer to the cache (or frees it when the cache is full: oldest first)
  void give_back(void* p, size_t capacity) {
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (capacity > limit_) {
        drop.push_back(p);
      } else {
        free_.emplace_back(capacity, p);
        held_ += capacity;
        while (held_ > limit_) {
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

  // the smallest cached buffer of [bytes, 1.25 bytes], removed from the cache, or null
  void* reuse(size_t bytes, size_t* capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t best = free_.size();
    for (size_t i = 0; i < free_.size(); ++i) {
      const size_t cap = free_[i].first;
      if (cap >= bytes && cap <= bytes + bytes / 4 &&
          (best == free_.size() || cap < free_[best].first)) {
        best = i;
      }
    }
    if (best == free_.size()) return nullptr;
    *capacity = free_[best].first;
    void* p = free_[best].second;
    held_ -= *capacity;
    free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
    return p;
  }

  std::mutex mutex_;
  std::vector<std::pair<size_t, void*>> free_;
  size_t held_ = 0;
  size_t limit_ = 0;
};

// at::empty for the big buffers (through the cache), plain at::empty for small ones
inline Tensor big_empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
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
// batch shards

// The batch split into shards of about g_shard_rows rows each: shard s holds rows
// [begin(s), begin(s + 1)). The layout depends on B alone; threads take whole shards, and
// every per-shard partial sum is reduced in shard order, so results do not depend on the
// number of threads.
struct Shards {
  int64_t n;
  int64_t B;
  int64_t begin(int64_t s) const { return s * B / n; }
  int64_t rows(int64_t s) const { return begin(s + 1) - begin(s); }
  int64_t max_rows() const { return (B + n - 1) / n; }
};

inline Shards make_shards(int64_t B) {
  return Shards{std::max<int64_t>(1, B / std::max<int64_t>(1, g_shard_rows)), B};
}

// runs f(s) for every shard, whole shards per thread, with FTZ/DAZ and single-threaded BLAS
template <typename F>
void for_shards(const Shards& sh, const F& f) {
  at::parallel_for(0, sh.n, 1, [&](int64_t s_begin, int64_t s_end) {
    FlushDenormals ftz;
    SingleThreadBlas one_thread;
    for (int64_t s = s_begin; s < s_end; ++s) f(s);
  });
}

}  // namespace rnnzoo_fused
