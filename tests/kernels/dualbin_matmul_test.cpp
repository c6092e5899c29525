// Dual-binarization kernels: SIMD (every Highway target this CPU supports) vs the reference dequantizer
// (bitwise) and vs a double-precision product (with a derived tolerance), for the GEMV (n = 1..4), the panel
// path (n > 4), the masked-sum scalar twin and the generic dot-product oracle; groups of 8 to 128, group
// sizes that are and are not multiples of 16 (the dequantizer's vector width) and of 32 (the GEMV's block of
// columns, else its any-group path), odd row counts (the GEMV's two-row steps), and a shape large enough for
// the OpenMP paths.
//
// Tolerances. y = Σ_c Ŵ_c·x_c with Ŵ_c = b1_c·α1 + b2_c·α2 exactly (the double reference), i.e. the sum of
// the terms α1·x_c (b1_c = 1) and α2·x_c (b2_c = 1) of the row. Each path rounds each term a bounded number
// of times k, so |ŷ − y| ≤ γ_k·M with M = Σ_c (b1_c·|α1| + b2_c·|α2|)·|x_c| and γ_k = k·u/(1 − k·u), u = 2⁻²⁴
// (Higham, Accuracy and Stability, §3.1; a rounded partial sum Σx multiplied by α keeps the same bound with
// its terms scaled by |α|):
// * masked-sum scalar twin: ≤ gs − 1 roundings summing x over the group, 1 for α·s, 1 for adding the two
//   planes' products, ≤ G accumulating over the groups: k ≤ gs + G + 1 ≤ cols + 2 (gs·G = cols).
// * SIMD GEMV: ≤ gs/N roundings in a lane's add chain (N ≥ 4 lanes), 1 in the FMA into the row total, which
//   every later group's two FMAs round again (≤ 2G), ≤ 4 in the reduction of ≤ 16 lanes: k ≤ gs + 2G + 5.
// * panel path (sgemm) and packed_matmul_scalar: Ŵ itself is fl(α1 + α2) (1 rounding: two fp16 values can be
//   2⁴⁰ apart) and the dot product ≤ cols roundings in any order: k ≤ cols + 1.
// So k = cols + 2G + 8 bounds all of them; M counts |α1| and |α2| apart, because where α1 ≈ −α2 Ŵ is small
// but the two masked sums are not. The double reference itself errs by ≈ cols·2⁻⁵³·M: a slack of 1e-12·M.
#include "kernels/dualbin_matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/random_dualbin.h"
#include "kernels/format_kernels.h"
#include "test_util.h"

namespace lowbit {
namespace {

double gamma(int64_t k) {
  const double u = std::ldexp(1.0, -24);
  return double(k) * u / (1 - double(k) * u);
}

struct Case {
  int64_t rows, cols, gs;
};
// cols = 128·k with groups of 64 and 128; groups of 8 and 24 (neither a multiple of 16 nor of 32) and 32
// (one GEMV block); odd row counts; 129·512 weights is past the size where the kernels go multithreaded.
const Case kCases[] = {{1, 128, 128}, {3, 256, 64}, {17, 384, 128}, {40, 1024, 128},
                       {7, 64, 8},    {5, 120, 24}, {9, 96, 32},    {129, 512, 64}};

TEST(DualBinMatmul, DequantizeRowsIsBitwiseTheReferenceOnEveryTarget) {
  std::mt19937 rng(11);
  for (const Case& cs : kCases) {
    const test::RandomDualBin p = test::random_dualbin(cs.rows, cs.cols, cs.gs, rng);
    SCOPED_TRACE(::testing::Message() << cs.rows << "x" << cs.cols << " g" << cs.gs);
    std::vector<float> ref(size_t(cs.rows * cs.cols));
    dualbin_dequantize_rows_scalar(p.w, 0, cs.rows, ref.data());
    test::for_each_simd_target([&] {
      std::vector<float> out(ref.size(), NAN);
      dualbin_dequantize_rows(p.w, 0, cs.rows, out.data());
      EXPECT_EQ(std::memcmp(out.data(), ref.data(), ref.size() * 4), 0);
      if (cs.rows >= 3) {  // a row range in the middle
        std::vector<float> mid(size_t(2 * cs.cols), NAN);
        dualbin_dequantize_rows(p.w, 1, 2, mid.data());
        EXPECT_EQ(std::memcmp(mid.data(), ref.data() + cs.cols, mid.size() * 4), 0);
      }
    });
  }
}

TEST(DualBinMatmul, MatmulMatchesTheDoubleReferenceOnEveryTarget) {
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const Case& cs : kCases) {
    const test::RandomDualBin p = test::random_dualbin(cs.rows, cs.cols, cs.gs, rng);
    const int64_t G = cs.cols / cs.gs;
    for (int64_t n : {1, 2, 3, 4, 5, 17, 64}) {
      SCOPED_TRACE(::testing::Message() << cs.rows << "x" << cs.cols << " g" << cs.gs << " n=" << n);
      std::vector<float> x(size_t(n * cs.cols));
      for (float& v : x) v = nd(rng);
      std::vector<double> exact(size_t(n * cs.rows)), mag(size_t(n * cs.rows));
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < cs.rows; ++r) {
          double s = 0, m = 0;
          for (int64_t c = 0; c < cs.cols; ++c) {
            const int64_t g = r * G + c / cs.gs;
            const double a1 = f16_to_f32(p.scales[size_t(2 * g)]),
                         a2 = f16_to_f32(p.scales[size_t(2 * g + 1)]);
            const bool b1 = plane_bit(p.w.plane1 + r * cs.cols / 8, c),
                       b2 = plane_bit(p.w.plane2 + r * cs.cols / 8, c);
            const double xc = x[size_t(t * cs.cols + c)];
            s += ((b1 ? a1 : 0) + (b2 ? a2 : 0)) * xc;  // exact Ŵ: the sum of two fp16 values is a double
            m += ((b1 ? std::fabs(a1) : 0) + (b2 ? std::fabs(a2) : 0)) * std::fabs(xc);
          }
          exact[size_t(t * cs.rows + r)] = s;
          mag[size_t(t * cs.rows + r)] = m;
        }
      const double tol = gamma(cs.cols + 2 * G + 8) + 1e-12;
      auto check = [&](const std::vector<float>& y, const char* what) {
        for (size_t i = 0; i < y.size(); ++i)
          ASSERT_LE(std::fabs(double(y[i]) - exact[i]), tol * mag[i]) << what << " " << i;
      };
      std::vector<float> ys(size_t(n * cs.rows), NAN);
      dualbin_matmul_scalar(p.w, x.data(), n, ys.data());
      check(ys, "masked-sum scalar twin");
      std::vector<float> yt(ys.size(), NAN);
      format_kernels(dualbin_format()).matmul_scalar(p.w, x.data(), n, yt.data());
      EXPECT_EQ(std::memcmp(yt.data(), ys.data(), ys.size() * 4), 0);  // the table's twin is that one
      std::fill(ys.begin(), ys.end(), NAN);
      packed_matmul_scalar(p.w, x.data(), n, ys.data());
      check(ys, "dot-product oracle");
      test::for_each_simd_target([&] {
        std::vector<float> y(ys.size(), NAN);
        format_kernels(dualbin_format()).matmul(p.w, x.data(), n, y.data());
        check(y, n <= 4 ? "simd gemv" : "panels + sgemm");
        if (n <= 4) {
          std::vector<float> yg(ys.size(), NAN);
          dualbin_gemv(p.w, x.data(), n, yg.data());
          EXPECT_EQ(std::memcmp(yg.data(), y.data(), y.size() * 4), 0);
        }
      });
    }
  }
}

// A group whose two planes select the same columns with α2 = −α1 has Ŵ = 0 there, but masked sums of
// magnitude Σ|x|: the cancellation the tolerance's M is built for. x is in halves, so every sum and product
// here is exact and every path must give exactly 0.
TEST(DualBinMatmul, CancellingPlanesGiveZero) {
  std::vector<uint8_t> b(4 * 128, 1);
  std::vector<float> a1(4, 0.75f), a2(4, -0.75f), x(3 * 128);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i % 7) - 2.5f;
  auto w = make_dualbin(4, 128, 128, b.data(), b.data(), a1.data(), a2.data());
  test::for_each_simd_target([&] {
    std::vector<float> y(12, NAN);
    dualbin_matmul(*w, x.data(), 3, y.data());
    for (float v : y) EXPECT_EQ(v, 0.0f);
  });
}

TEST(DualBinMatmul, GemvChecksItsArguments) {
  std::mt19937 rng(13);
  const test::RandomDualBin p = test::random_dualbin(2, 64, 64, rng);
  std::vector<float> x(5 * 64), y(10);
  EXPECT_EQ(test::error_of([&] { dualbin_gemv(p.w, x.data(), 5, y.data()); }),
            "dualbin_gemv: 5 tokens (supports 1..4)");
  EXPECT_THROW(dualbin_gemv(p.w, x.data(), 0, y.data()), Error);
  DualBinWeight w = p.w;
  w.group_size = 12;
  EXPECT_THROW(dualbin_gemv(w, x.data(), 1, y.data()), Error);
  w = p.w;
  w.plane2 = nullptr;
  EXPECT_THROW(dualbin_matmul(w, x.data(), 1, y.data()), Error);
  dualbin_matmul(p.w, x.data(), 0, y.data());  // nothing to do, no error
}

}  // namespace
}  // namespace lowbit
