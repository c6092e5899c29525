// Helpers for the tokenizer tests: id-stream digests as the refs write them, one-line error checks.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/sha256.h"

namespace lowbit::test {

// sha256 of the ids as int32 little-endian (the refs' "sha256_int32le"), independent of host byte order.
inline std::string sha256_int32le(const std::vector<int32_t>& ids) {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (int32_t id : ids)
    for (int k = 0; k < 4; ++k) bytes.push_back(char(uint32_t(id) >> (8 * k) & 0xFF));
  return sha256_hex(bytes.data(), bytes.size());
}

// Runs f, expects a lowbit::Error whose message is one line containing every string in `must_contain`.
inline void expect_one_line_error(const std::function<void()>& f, const std::vector<std::string>& must_contain) {
  try {
    f();
    ADD_FAILURE() << "no error thrown (expected one mentioning " << must_contain.front() << ")";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& s : must_contain) EXPECT_NE(msg.find(s), std::string::npos) << "'" << s << "' not in: " << msg;
  }
}

}  // namespace lowbit::test
