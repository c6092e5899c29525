// Process facts for reports and benchmarks: wall clock, peak RSS, thread count.
#pragma once
#include <chrono>
#include <cstdint>

namespace lowbit {

// Peak resident set size of this process so far, in bytes (getrusage ru_maxrss).
uint64_t peak_rss_bytes();

// Hands memory that was freed back to the OS (glibc malloc_trim). After a burst of small allocations (e.g.
// tokenizing a large text) glibc keeps the freed heap resident; later large buffers would add to it.
void release_free_memory();

class Timer {
 public:
  Timer() : t0_(std::chrono::steady_clock::now()) {}
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  void reset() { t0_ = std::chrono::steady_clock::now(); }

 private:
  std::chrono::steady_clock::time_point t0_;
};

// Threads used by lowbit's own parallel loops (OpenMP) and by OpenBLAS. 0 = all cores.
void set_num_threads(int n);
int num_threads();

}  // namespace lowbit
