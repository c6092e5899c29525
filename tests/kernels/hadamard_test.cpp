// Hadamard row kernels (kernels/hadamard.h): SIMD on every Highway target this CPU supports is bitwise the
// scalar twin (the reference applied per row; formats/hadamard_test.cpp checks that one against the dense
// product), for every base m, lengths whose butterflies run inside a vector (m = 1, n ≥ 4) or across vectors,
// partial vectors of the dense product (m = 12, 20 on 8 or 16 lanes), 1, 3 and 64 rows (the last large
// enough for the threaded path), unaligned rows, and with one thread or all.
#include "kernels/hadamard.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "formats/hadamard.h"
#include "test_util.h"

namespace lowbit {
namespace {

std::vector<float> random_rows(int64_t count, int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(count * n));
  for (float& v : x) v = nd(rng);
  return x;
}

TEST(HadamardRows, SimdIsBitwiseTheScalarTwinOnEveryTarget) {
  std::mt19937 rng(31);
  for (int64_t n : {1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 48, 56, 80, 384, 640, 1024, 4096, 14336})
    for (int64_t count : {1, 3, 64})
      for (bool transpose : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "n=" << n << " count=" << count << " transpose=" << transpose);
        const std::vector<float> x = random_rows(count, n, rng);
        std::vector<float> want = x;
        hadamard_rows_scalar(want.data(), count, n, transpose);
        test::for_each_simd_target([&] {
          std::vector<float> y = x;
          hadamard_rows(y.data(), count, n, transpose);
          EXPECT_EQ(std::memcmp(y.data(), want.data(), y.size() * sizeof(float)), 0);
        });
      }
}

// Rows that start at any float offset (LoadU/StoreU), and nothing outside the rows is written.
TEST(HadamardRows, UnalignedRowsAndNothingOutside) {
  std::mt19937 rng(32);
  for (int64_t n : {16, 28, 640}) {
    SCOPED_TRACE(n);
    const int64_t count = 5;
    std::vector<float> buf = random_rows(count * n + 2, 1, rng);
    std::vector<float> want = buf;
    hadamard_rows_scalar(want.data() + 1, count, n, false);
    test::for_each_simd_target([&] {
      std::vector<float> y = buf;
      hadamard_rows(y.data() + 1, count, n, false);
      EXPECT_EQ(std::memcmp(y.data(), want.data(), y.size() * sizeof(float)), 0);
      EXPECT_EQ(y.front(), buf.front());
      EXPECT_EQ(y.back(), buf.back());
    });
  }
}

// Each row is one thread's: the same bits with one thread as with every core.
TEST(HadamardRows, ThreadCountDoesNotChangeResults) {
  std::mt19937 rng(33);
  const int64_t count = 64, n = 14336;
  const std::vector<float> x = random_rows(count, n, rng);
  std::vector<float> all = x, one = x;
  hadamard_rows(all.data(), count, n, true);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  hadamard_rows(one.data(), count, n, true);
  omp_set_num_threads(threads);
  EXPECT_EQ(std::memcmp(all.data(), one.data(), all.size() * sizeof(float)), 0);
}

TEST(HadamardRows, ChecksItsArguments) {
  std::vector<float> x(3000);
  EXPECT_EQ(test::error_of([&] { hadamard_rows(x.data(), 3, 1000, false); }),
            "hadamard_rows: length 1000 is not 2^k, 12·2^k, 20·2^k or 28·2^k");
  EXPECT_EQ(test::error_of([&] { hadamard_rows(x.data(), -1, 16, false); }), "hadamard_rows: -1 rows");
  EXPECT_THROW(hadamard_rows_scalar(x.data(), 1, 36, false), Error);
  EXPECT_THROW(hadamard_rows(x.data(), 1, 0, false), Error);
  hadamard_rows(x.data(), 0, 16, false);  // no rows: nothing to do
}

}  // namespace
}  // namespace lowbit
