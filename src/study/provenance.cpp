#include "study/provenance.h"

#include <ctime>

#ifndef LOWBIT_GIT_REV
#define LOWBIT_GIT_REV "unknown"
#endif

namespace lowbit {

std::string git_revision() {
  return LOWBIT_GIT_REV;
}

std::string utc_now_iso() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace lowbit
