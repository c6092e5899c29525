// Process facts for reports and benchmarks: wall clock, peak RSS, thread count.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace lowbit {

// Peak resident set size of this process so far, in bytes (getrusage ru_maxrss).
uint64_t peak_rss_bytes();

// Hands memory that was freed back to the OS (glibc malloc_trim). After a burst of small allocations (e.g.
// tokenizing a large text) glibc keeps the freed heap resident; later large buffers would add to it.
void release_free_memory();

// The kernel's estimate of memory available to new allocations without swapping (/proc/meminfo
// MemAvailable), in bytes; 0 when unknown.
uint64_t available_memory_bytes();

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

// An allocator whose resize() leaves new elements uninitialized: pages of a large buffer are then touched
// (and counted in RSS) only when written. For buffers every read of which follows a write (the KV cache).
template <typename T>
struct DefaultInitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <typename U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept {}
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
template <typename T>
using UninitVector = std::vector<T, DefaultInitAllocator<T>>;

// Threads used by lowbit's own parallel loops (OpenMP) and by OpenBLAS. 0 = all cores.
void set_num_threads(int n);
int num_threads();

}  // namespace lowbit
