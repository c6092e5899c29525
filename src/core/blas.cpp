#include "core/blas.h"

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace lowbit {

namespace {

bool iequal(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](char x, char y) { return std::tolower(uint8_t(x)) == std::tolower(uint8_t(y)); });
}

}  // namespace

std::string blas_core_name() {
  const char* n = openblas_get_corename();
  return n ? n : "unknown";
}

std::string blas_kernels_description() {
  const char* from = std::getenv("LOWBIT_BLAS_CORE_REPLACED");
  if (!from) return blas_core_name();
  return blas_core_name() + " (replacing OpenBLAS's " + from + ")";
}

std::string blas_core_override(std::string_view current, bool avx512_skx, bool avx2_fma) {
  // OpenBLAS's x86-64 kernel families without AVX2.
  static constexpr std::string_view kPreAvx2[] = {
      "Katmai", "Coppermine", "Northwood",  "Prescott",    "Banias",   "Atom",         "Core2",
      "Penryn", "Dunnington", "Nehalem",    "Sandybridge", "Opteron",  "Opteron_SSE3", "Barcelona",
      "Bobcat", "Bulldozer",  "Piledriver", "Steamroller", "Excavator"};
  const bool old = std::any_of(std::begin(kPreAvx2), std::end(kPreAvx2),
                               [&](std::string_view k) { return iequal(k, current); });
  if (!old) return "";
  if (avx512_skx) return "SkylakeX";
  if (avx2_fma) return "Haswell";
  return "";
}

std::string blas_core_override_here(std::string_view current) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool skx = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
                   __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                   __builtin_cpu_supports("avx512vl");
  const bool hsw = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return blas_core_override(current, skx, hsw);
#else
  return "";
#endif
}

int blas_threads() {
  return openblas_get_num_threads();
}

void set_blas_threads(int n) {
  openblas_set_num_threads(n);
}

}  // namespace lowbit

#if defined(__x86_64__) && defined(__linux__)
// Runs before main (glibc passes the program's argv to constructors). OpenBLAS, a shared library, has already
// chosen its kernels by now. Programs link this object through `--undefined=lowbit_blas_startup_check`
// (CMakeLists.txt), so every lowbit executable gets it without calling anything.
extern "C" __attribute__((constructor(101))) void lowbit_blas_startup_check(int, char** argv, char**) {
  if (!argv || std::getenv("OPENBLAS_CORETYPE")) return;  // the user's choice, or already re-executed
  const std::string current = lowbit::blas_core_name();
  const std::string core = lowbit::blas_core_override_here(current);
  if (core.empty()) return;
  setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
  setenv("LOWBIT_BLAS_CORE_REPLACED", current.c_str(), 1);
  execv("/proc/self/exe", argv);
  // No re-execution possible (no /proc): run on the slow kernels rather than not at all.
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("LOWBIT_BLAS_CORE_REPLACED");
}
#endif
