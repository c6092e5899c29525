// Errors: every failure a user can cause (bad file, bad option) is a lowbit::Error whose message is one line
// naming the file (or option) and what is wrong. The CLI prints it and exits non-zero; nothing aborts.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace lowbit {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// fail("{}: header length {} exceeds file size {}", path, n, size)
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace lowbit

// Internal invariant (a bug in lowbit, not bad input): still an Error, so tools report it instead of
// crashing.
#define LOWBIT_ASSERT(cond)                                                                       \
  do {                                                                                            \
    if (!(cond)) ::lowbit::fail("internal error: {} failed at {}:{}", #cond, __FILE__, __LINE__); \
  } while (0)
