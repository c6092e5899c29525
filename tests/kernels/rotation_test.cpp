// Structured rotation kernels (kernels/rotation.h): rotate_rows (Highway, every target this CPU supports) vs
// its scalar twin rotate_rows_scalar (rotate_ref<float> per row; formats/quip_test.cpp checks that one
// against the dense matrix and the double reference), for Kronecker widths with one- and many-vector rows and
// ragged tails (4, 6, 12, 128, 210 = 2·3·5·7, 384, 1024, 14336), 1, 3 and 17 rows (17 rows of 1024 are past
// the threaded path's threshold), both directions, unaligned rows; the Hadamard kind through the same entry
// point; and results independent of the thread count, bit for bit.
//
// Tolerance. Both paths compute U = X·Bᵀ (Rᵀ: X·B) and then A·U (Aᵀ·U) as dot products in the same order
// (ascending i, then k), the scalar twin rounding each product and each sum apart, the SIMD kernel with one
// fused multiply-add per term where the target has FMA (so some terms are rounded once where the twin rounds
// them twice, and the results need not be equal). Each is within γ_{p1+p2}·(|R|·|x|)_i of the exact R·x
// (random_quip.h's rotation_roundings: ≤ p2 roundings per term in the first product, ≤ p1 in the second;
// Higham, Accuracy and Stability, §3.1, γ_k = k·u/(1 − k·u), u = 2⁻²⁴), so they differ by at most
// 2·γ_{p1+p2}·(|R|·|x|)_i, with |R|·|x| formed in double (random_quip.h's abs_rotate; its own rounding,
// ≈ (p1 + p2)·2⁻⁵³ relative, is covered by a factor 1 + 1e-12). The Hadamard kind is the signs around
// hadamard_rows, which is bitwise its scalar twin (kernels/hadamard_test.cpp): bitwise here too.
#include "kernels/rotation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/parallel.h"
#include "core/sys.h"
#include "formats/random_quip.h"
#include "test_util.h"

namespace lowbit {
namespace {

std::vector<float> random_rows(int64_t count, int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(count * n));
  for (float& v : x) v = nd(rng);
  return x;
}

// (|R|·|x_t|) for each row, in double.
std::vector<double> magnitudes(const Rotation& r, const std::vector<float>& x, int64_t count,
                               bool transpose) {
  std::vector<double> mag(x.size());
  for (size_t i = 0; i < x.size(); ++i) mag[i] = std::fabs(double(x[i]));
  for (int64_t t = 0; t < count; ++t) test::abs_rotate(r, mag.data() + t * r.n, transpose);
  return mag;
}

struct Case {
  int64_t n, count;
};
std::vector<Case> kronecker_cases() {
  std::vector<Case> out;
  for (int64_t n : {4, 6, 12, 128, 210, 384, 1024})
    for (int64_t count : {1, 3, 17}) out.push_back({n, count});
  out.push_back({14336, 1});
  return out;
}

TEST(RotationRows, KroneckerSimdMatchesTheScalarTwinWithinDerivedBoundOnEveryTarget) {
  std::mt19937 rng(41);
  for (const Case& cs : kronecker_cases())
    for (bool transpose : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << "n=" << cs.n << " count=" << cs.count << " transpose=" << transpose);
      auto r = make_rotation(RotationKind::Kronecker, cs.n, rng(), "R");
      const std::vector<float> x = random_rows(cs.count, cs.n, rng);
      std::vector<float> want = x;
      rotate_rows_scalar(*r, want.data(), cs.count, transpose);
      const std::vector<double> mag = magnitudes(*r, x, cs.count, transpose);
      const double tol = 2 * test::gamma32(test::rotation_roundings(*r)) * (1 + 1e-12);
      test::for_each_simd_target([&] {
        std::vector<float> y = x;
        rotate_rows(*r, y.data(), cs.count, transpose);
        for (size_t i = 0; i < y.size(); ++i)
          ASSERT_LE(std::fabs(double(y[i]) - double(want[i])), tol * mag[i]) << i;
      });
    }
}

// The scalar twin is rotate_ref<float> row by row.
TEST(RotationRows, ScalarTwinIsTheReferencePerRow) {
  std::mt19937 rng(42);
  for (RotationKind kind : {RotationKind::Kronecker, RotationKind::Hadamard})
    for (bool transpose : {false, true}) {
      auto r = make_rotation(kind, 384, 9, "R");
      const std::vector<float> x = random_rows(3, 384, rng);
      std::vector<float> a = x, b = x;
      rotate_rows_scalar(*r, a.data(), 3, transpose);
      for (int64_t t = 0; t < 3; ++t) rotate_ref(*r, b.data() + t * 384, transpose);
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
    }
}

TEST(RotationRows, HadamardIsBitwiseTheScalarTwinOnEveryTarget) {
  std::mt19937 rng(43);
  for (int64_t n : {2, 4, 12, 24, 40, 56, 128, 384, 1024, 14336})
    for (int64_t count : {1, 3, 17})
      for (bool transpose : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "n=" << n << " count=" << count << " transpose=" << transpose);
        auto r = make_rotation(RotationKind::Hadamard, n, rng(), "R");
        const std::vector<float> x = random_rows(count, n, rng);
        std::vector<float> want = x;
        rotate_rows_scalar(*r, want.data(), count, transpose);
        test::for_each_simd_target([&] {
          std::vector<float> y = x;
          rotate_rows(*r, y.data(), count, transpose);
          EXPECT_EQ(std::memcmp(y.data(), want.data(), y.size() * sizeof(float)), 0);
        });
      }
}

// Rows that start at any float offset (LoadU/StoreU), and nothing outside the rows is written.
TEST(RotationRows, UnalignedRowsAndNothingOutside) {
  std::mt19937 rng(44);
  for (RotationKind kind : {RotationKind::Kronecker, RotationKind::Hadamard})
    for (int64_t n : {12, 128, 384}) {
      SCOPED_TRACE(::testing::Message() << rotation_kind_name(kind) << " " << n);
      auto r = make_rotation(kind, n, 5, "R");
      const int64_t count = 5;
      const std::vector<float> buf = random_rows(count * n + 2, 1, rng);
      std::vector<float> want = buf;
      rotate_rows_scalar(*r, want.data() + 1, count, false);
      const std::vector<float> inner(buf.begin() + 1, buf.end() - 1);
      const std::vector<double> mag = magnitudes(*r, inner, count, false);
      const double tol = kind == RotationKind::Hadamard
                             ? 0.0
                             : 2 * test::gamma32(test::rotation_roundings(*r)) * (1 + 1e-12);
      test::for_each_simd_target([&] {
        std::vector<float> y = buf;
        rotate_rows(*r, y.data() + 1, count, false);
        EXPECT_EQ(std::memcmp(&y.front(), &buf.front(), 4), 0);
        EXPECT_EQ(std::memcmp(&y.back(), &buf.back(), 4), 0);
        for (size_t i = 0; i < inner.size(); ++i)
          ASSERT_LE(std::fabs(double(y[i + 1]) - double(want[i + 1])), tol * mag[i]) << i;
      });
    }
}

// Each row is one thread's: the same bits with 1, 2, 3 or 4 threads (17 rows of 1024 or 14336 are past the
// threaded path's threshold).
TEST(RotationRows, ThreadCountDoesNotChangeResults) {
  std::mt19937 rng(45);
  const int threads = num_threads();
  for (RotationKind kind : {RotationKind::Kronecker, RotationKind::Hadamard})
    for (int64_t n : {1024, 14336})
      for (bool transpose : {false, true}) {
        SCOPED_TRACE(::testing::Message() << rotation_kind_name(kind) << " " << n << " t=" << transpose);
        auto r = make_rotation(kind, n, 8, "R");
        const int64_t count = 17;
        const std::vector<float> x = random_rows(count, n, rng);
        set_num_threads(1);
        std::vector<float> one = x;
        rotate_rows(*r, one.data(), count, transpose);
        for (int t : {2, 3, 4}) {
          set_num_threads(t);
          set_contended_for_testing(false);  // a full team, not one thread after a late start
          std::vector<float> y = x;
          rotate_rows(*r, y.data(), count, transpose);
          EXPECT_EQ(std::memcmp(y.data(), one.data(), y.size() * sizeof(float)), 0) << t << " threads";
        }
      }
  set_num_threads(threads);
}

TEST(RotationRows, NoRowsIsNothingToDo) {
  auto r = make_rotation(RotationKind::Kronecker, 12, 1, "R");
  std::vector<float> x(12, 1.0f);
  rotate_rows(*r, x.data(), 0, false);
  rotate_rows_scalar(*r, x.data(), 0, true);
  for (float v : x) EXPECT_EQ(v, 1.0f);
}

}  // namespace
}  // namespace lowbit
