// Parallel regions that degrade gracefully when the CPU is shared (issue 30).
//
// A parallel region ends at a barrier, so a worker thread that another process has taken the core from holds
// everyone up for a scheduler time slice (milliseconds) at every region: beside one busy process, -t 2 ran at
// a third of -t 1's speed. Team notices this at a region's edges: a worker that starts it late, or a caller
// that waits at its end longer than it worked (parallel.cpp has the bounds). A few late regions in a short
// while mean the CPU is contended, and for a while (longer while it lasts) the regions that use Team run on
// the calling thread alone; then a full team probes again. Only regions whose results do not depend on how
// their iterations are shared out may use Team (row-parallel kernels, element-wise loops, parallel_for), so
// results stay bit-identical for a given -t whatever the machine's load.
#pragma once
#include <omp.h>

#include <atomic>
#include <cstdint>
#include <exception>

namespace lowbit {

int64_t monotonic_ns();

// Tests: every Team runs on one thread (true) until called with false.
void set_contended_for_testing(bool contended);

class Team {
 public:
  // How many threads the next region gets: num_threads(), or 1 inside another region or while contended.
  Team();
  int size() const { return size_; }
  // Called by every thread first thing in the region.
  void started() const {
    if (size_ > 1 && omp_get_thread_num() > 0) note_start(start_ns_);
  }
  // Called by every thread when its share is done (after an `omp for nowait`), before the region's barrier.
  void done() const {
    if (size_ > 1 && omp_get_thread_num() == 0) done_ns_ = monotonic_ns();
  }
  // Called by the calling thread after the region.
  void joined() const {
    if (size_ > 1) note_join(start_ns_, done_ns_);
  }

 private:
  static void note_start(int64_t start_ns);
  static void note_join(int64_t start_ns, int64_t done_ns);
  int size_;
  int64_t start_ns_;
  mutable int64_t done_ns_ = 0;
};

// body(i) for i in [0, n) on a Team, dynamically scheduled in chunks (only when `parallel`: callers pass
// whether the work is worth a parallel region, which costs more than tiny loops on a loaded machine). An
// exception must not escape an OpenMP region (that terminates), so the first one thrown is kept, the
// remaining iterations are skipped, and it is rethrown after the loop.
template <typename F>
void parallel_for(int64_t n, F&& body, int64_t chunk = 1, bool parallel = true) {
  std::exception_ptr err;
  std::atomic<bool> failed{false};
  const Team team;
#pragma omp parallel num_threads(team.size()) if (parallel && team.size() > 1)
  {
    team.started();
#pragma omp for schedule(dynamic, chunk) nowait
    for (int64_t i = 0; i < n; ++i) {
      if (failed.load(std::memory_order_relaxed)) continue;
      try {
        body(i);
      } catch (...) {
        if (!failed.exchange(true)) err = std::current_exception();
      }
    }
    team.done();
  }
  team.joined();
  if (err) std::rethrow_exception(err);
}

// body(i, scratch) for i in [0, n) on a Team, each thread taking one contiguous share (OpenMP's static
// schedule), for loops of equal, cheap iterations (rows of a kernel); scratch = make(), once per thread.
// body must not throw.
template <typename Make, typename F>
void parallel_rows_with(int64_t n, Make&& make, F&& body, bool parallel = true) {
  const Team team;
#pragma omp parallel num_threads(team.size()) if (parallel && team.size() > 1)
  {
    team.started();
    auto scratch = make();
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < n; ++i) body(i, scratch);
    team.done();
  }
  team.joined();
}

// body(i) for i in [0, n), as parallel_rows_with without scratch.
template <typename F>
void parallel_rows(int64_t n, F&& body, bool parallel = true) {
  parallel_rows_with(
      n, [] { return 0; }, [&](int64_t i, int) { body(i); }, parallel);
}

}  // namespace lowbit
