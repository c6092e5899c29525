#include "core/parallel.h"

#include <time.h>

#include "core/sys.h"

namespace lowbit {

namespace {

// A worker woken from OpenMP's wait starts within microseconds (tens when it slept in the kernel); half a
// millisecond late, at the start or at the end, means it had to wait for a core.
constexpr int64_t kLateNs = 500'000;
// One late region can be a hiccup even on an idle machine (a virtual CPU descheduled by its host: about 2 a
// second measured here); kLateEvents of them within kBurstNs are contention.
constexpr int kLateEvents = 3;
constexpr int64_t kBurstNs = 100'000'000;
// How long regions stay on one thread then. A probe costs at most a few late regions, so under lasting
// contention probing every 200 ms loses a few percent.
constexpr int64_t kSoloNs = 200'000'000;

std::atomic<int64_t> g_solo_until{0};
std::atomic<int64_t> g_late[kLateEvents];  // times of the last late regions, a ring
std::atomic<unsigned> g_late_next{0};

void note_late(int64_t now) {
  const unsigned i = g_late_next.fetch_add(1, std::memory_order_relaxed) % kLateEvents;
  const int64_t oldest = g_late[i].exchange(now, std::memory_order_relaxed);  // kLateEvents ago
  if (oldest > 0 && now - oldest < kBurstNs) g_solo_until.store(now + kSoloNs, std::memory_order_relaxed);
}

}  // namespace

int64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

Team::Team() : size_(1), start_ns_(0) {
  if (omp_in_parallel()) return;
  size_ = num_threads();
  if (size_ < 2) return;
  start_ns_ = monotonic_ns();
  if (start_ns_ < g_solo_until.load(std::memory_order_relaxed)) size_ = 1;
}

void Team::note_start(int64_t start_ns) {
  const int64_t now = monotonic_ns();
  if (now - start_ns > kLateNs) note_late(now);
}

// Alone, dynamically shared work leaves the caller waiting for at most the worker's last chunk, and static
// shares of equal rows for less: a wait longer than the caller's own work means the worker lost its core.
void Team::note_join(int64_t start_ns, int64_t done_ns) {
  const int64_t now = monotonic_ns(), wait = now - done_ns;
  if (done_ns > 0 && wait > kLateNs && wait > done_ns - start_ns) note_late(now);
}

}  // namespace lowbit
