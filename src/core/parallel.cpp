#include "core/parallel.h"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>

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
// How long regions stay on one thread then: kSoloNs, doubled (up to kSoloMaxNs) each time the full team that
// probes afterwards finds the CPU still contended within kRecentNs, so that lasting contention costs a probe
// (a few late regions, some milliseconds) every few seconds only. The probe's team is not always late at
// once (its regions may fall where the neighbour sleeps), so "still contended" allows some hundreds of ms.
constexpr int64_t kSoloNs = 200'000'000;
constexpr int64_t kSoloMaxNs = 3'200'000'000;
constexpr int64_t kRecentNs = 1'000'000'000;

std::atomic<int64_t> g_solo_until{0};
std::atomic<int64_t> g_solo_ns{kSoloNs};
std::atomic<int64_t> g_late[kLateEvents];  // times of the last late regions, a ring
std::atomic<unsigned> g_late_next{0};
std::atomic<int64_t> g_solo_periods{0}, g_solo_total_ns{0};

// LOWBIT_TEAM_STATS=1: how often and how long regions ran alone, on stderr at exit (benchmarks, diagnosis).
struct SoloStats {
  ~SoloStats() {
    if (const char* e = std::getenv("LOWBIT_TEAM_STATS"); e && *e && *e != '0')
      std::fprintf(stderr, "lowbit: contended CPU: %lld one-thread periods, %.2f s in all\n",
                   static_cast<long long>(g_solo_periods.load()), double(g_solo_total_ns.load()) * 1e-9);
  }
} g_solo_stats;

void note_late(int64_t now) {
  const unsigned i = g_late_next.fetch_add(1, std::memory_order_relaxed) % kLateEvents;
  const int64_t oldest = g_late[i].exchange(now, std::memory_order_relaxed);  // kLateEvents ago
  if (oldest == 0 || now - oldest >= kBurstNs) return;
  const int64_t until = g_solo_until.load(std::memory_order_relaxed);
  if (now < until) return;  // a region that began before solo mode did
  const int64_t prev = g_solo_ns.load(std::memory_order_relaxed);
  const int64_t solo = now - until < kRecentNs ? std::min(2 * prev, kSoloMaxNs) : kSoloNs;
  g_solo_ns.store(solo, std::memory_order_relaxed);
  g_solo_until.store(now + solo, std::memory_order_relaxed);
  g_solo_periods.fetch_add(1, std::memory_order_relaxed);
  g_solo_total_ns.fetch_add(solo, std::memory_order_relaxed);
}

}  // namespace

int64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void set_contended_for_testing(bool contended) {
  g_solo_until.store(contended ? std::numeric_limits<int64_t>::max() : 0, std::memory_order_relaxed);
  g_solo_ns.store(kSoloNs, std::memory_order_relaxed);
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
