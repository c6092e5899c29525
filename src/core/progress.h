// A progress line on stderr: "label  [#####.....]  123/456  1.2k tok/s  ETA 0:42". Redrawn in place on a
// terminal; on a pipe/log it prints a line at most every 10 s so CI logs stay short.
#pragma once
#include <cstdint>
#include <string>

#include "core/sys.h"

namespace lowbit {

class Progress {
 public:
  // unit: what the rate counts ("tok", "layer"); quiet: print nothing (for --json or tests)
  Progress(std::string label, uint64_t total, std::string unit = "", bool quiet = false);
  void add(uint64_t done_units,
           uint64_t rate_units = 0);  // advance; rate_units feed the rate (default = done)
  void finish();
  // Extra text shown after the counts (e.g. "loss 2.31"), from the next redraw on.
  void set_note(std::string note) { note_ = std::move(note); }
  ~Progress();

 private:
  void draw(bool final);
  std::string label_, unit_, note_;
  uint64_t total_, done_ = 0, rate_count_ = 0;
  bool quiet_, tty_, finished_ = false;
  Timer timer_;
  double last_draw_ = -1e9;
};

std::string format_duration(double seconds);  // 0:42, 1:02:03
std::string format_bytes(uint64_t n);         // 1.23 GiB
std::string format_rate(double per_second,
                        const std::string& unit);  // "12.3 tok/s", or "38.4 s/layer" below 1/s

}  // namespace lowbit
