#include "core/sys.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <omp.h>
#include <sys/resource.h>

#include <cstdio>

#include "core/blas.h"

namespace lowbit {

void release_free_memory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

uint64_t available_memory_bytes() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kib = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof line, f))
    found = std::sscanf(line, "MemAvailable: %llu kB", &kib) == 1;
  std::fclose(f);
  return found ? uint64_t(kib) * 1024 : 0;
}

uint64_t peak_rss_bytes() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return uint64_t(ru.ru_maxrss) * 1024;
}

void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  set_blas_threads(n);
}

int num_threads() {
  return omp_get_max_threads();
}

}  // namespace lowbit
