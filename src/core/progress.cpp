#include "core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace lowbit {

Progress::Progress(std::string label, uint64_t total, std::string unit, bool quiet)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), quiet_(quiet), tty_(isatty(2)) {}

Progress::~Progress() {
  if (!finished_) finish();
}

void Progress::add(uint64_t done_units, uint64_t rate_units) {
  done_ += done_units;
  rate_count_ += rate_units ? rate_units : done_units;
  double t = timer_.seconds();
  if (quiet_) return;
  if ((tty_ && t - last_draw_ >= 0.1) || (!tty_ && t - last_draw_ >= 10.0)) {
    draw(false);
    last_draw_ = t;
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (!quiet_) draw(true);
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  uint64_t t = uint64_t(s + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}

std::string format_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(n);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.2f} {}", v, units[u]);
}

std::string format_rate(double per_second, const std::string& unit) {
  if (!(per_second > 0) || !std::isfinite(per_second)) return fmt::format("- {}/s", unit);
  // Slow work (a GPTQ layer takes tens of seconds) reads as time per unit, not "0.0 layer/s".
  if (per_second < 1) return fmt::format("{:.1f} s/{}", 1 / per_second, unit);
  return fmt::format("{:.1f} {}/s", per_second, unit);
}

void Progress::draw(bool final) {
  double t = timer_.seconds();
  double frac = total_ ? double(done_) / double(total_) : 1.0;
  int width = 24, fill = int(frac * width + 0.5);
  std::string bar(size_t(fill), '#');
  bar.append(size_t(width - fill), '.');
  double rate = t > 0 ? double(rate_count_) / t : 0;
  std::string rate_s = unit_.empty() ? "" : "  " + format_rate(rate, unit_);
  std::string eta = final ? fmt::format("  {} elapsed", format_duration(t))
                          : fmt::format("  ETA {}", format_duration(frac > 0 ? t * (1 - frac) / frac : NAN));
  std::string line = fmt::format("{}  [{}]  {}/{}{}{}{}", label_, bar, done_, total_,
                                 note_.empty() ? "" : "  ", note_, rate_s, eta);
  if (tty_)
    fmt::print(stderr, "\r{}\033[K{}", line, final ? "\n" : "");
  else
    fmt::print(stderr, "{}\n", line);
  std::fflush(stderr);
}

}  // namespace lowbit
