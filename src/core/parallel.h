// A parallel loop over OpenMP threads that lets exceptions out.
#pragma once
#include <atomic>
#include <cstdint>
#include <exception>

namespace lowbit {

// body(i) for i in [0, n) on OpenMP threads (only when `parallel`: callers pass whether the work is worth a
// parallel region, which costs more than tiny loops on a loaded machine). An exception must not escape an
// OpenMP region (that terminates), so the first one thrown is kept, the remaining iterations are skipped, and
// it is rethrown after the loop.
template <typename F>
void parallel_for(int64_t n, F&& body, int64_t chunk = 1, bool parallel = true) {
  std::exception_ptr err;
  std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, chunk) if (parallel)
  for (int64_t i = 0; i < n; ++i) {
    if (failed.load(std::memory_order_relaxed)) continue;
    try {
      body(i);
    } catch (...) {
      if (!failed.exchange(true)) err = std::current_exception();
    }
  }
  if (err) std::rethrow_exception(err);
}

}  // namespace lowbit
