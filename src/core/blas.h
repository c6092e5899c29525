// Which OpenBLAS kernels this process runs, and the start-up fix for CPUs newer than the installed OpenBLAS.
//
// Debian 12's OpenBLAS (0.3.21, DYNAMIC_ARCH) picks its kernel family from the CPU's model number when the
// library loads, and on a model it does not know it falls back to the SSE3 "Prescott" kernels. On an Emerald
// Rapids Xeon (family 6, model 207) that made sgemm 4.5x slower: WikiText2 perplexity of testbed-25m ran at
// 550 tokens/s instead of 2500 (measured, 2 cores). The family can only be chosen before the library loads,
// through the OPENBLAS_CORETYPE environment variable, so a lowbit program started on such a CPU sets it and
// re-executes itself once, before main (core/blas.cpp). A user's own OPENBLAS_CORETYPE is always respected.
#pragma once
#include <string>
#include <string_view>

namespace lowbit {

// The kernel family OpenBLAS runs in this process ("SkylakeX", "Haswell", "Prescott", ...).
std::string blas_core_name();

// blas_core_name(), followed by the family OpenBLAS had chosen by itself when the start-up check replaced it:
// "SkylakeX (replacing OpenBLAS's Prescott)". For provenance and benchmark output.
std::string blas_kernels_description();

// The family to run instead of `current` on a CPU with these features, or "" to keep `current`. Only the
// pre-AVX2 families that a misdetected newer CPU falls back to are replaced: "SkylakeX" needs AVX-512
// F/CD/BW/DQ/VL, "Haswell" needs AVX2 and FMA.
std::string blas_core_override(std::string_view current, bool avx512_skx, bool avx2_fma);

// blas_core_override with this CPU's features ("" off x86-64).
std::string blas_core_override_here(std::string_view current);

// OpenBLAS's own thread count (set_num_threads in core/sys.h sets it with OpenMP's).
int blas_threads();
void set_blas_threads(int n);

// Keeps OpenBLAS to the calling thread while it lives (workers that each run their own sequence), then
// restores the count.
class BlasOneThread {
 public:
  BlasOneThread() : saved_(blas_threads()) { set_blas_threads(1); }
  ~BlasOneThread() { set_blas_threads(saved_); }
  BlasOneThread(const BlasOneThread&) = delete;
  BlasOneThread& operator=(const BlasOneThread&) = delete;

 private:
  int saved_;
};

}  // namespace lowbit
