// BiLLM kernels: SIMD (every Highway target this CPU supports) vs the reference dequantizer (bitwise), the
// GEMV's lane values vs the dequantizer (bitwise, with one-hot inputs), and the GEMV (n = 1..4), the panel
// path (n > 4), the scalar twin and the generic dot-product oracle vs a double-precision product with a
// derived tolerance; blocks of 32 to 256 columns and single-block rows, blocks with no salient column, with
// every column salient and mixed, odd row counts (the GEMV's two-row steps, the 8-row thread chunks) and a
// shape large enough for the OpenMP paths.
//
// Tolerance. Every path computes Σ_c Ŵ_c·x_c with Ŵ_c exactly the reference's f32 value (billm_levels; the
// double reference uses the same values), so the only roundings are the products' and the sums': the scalar
// twin and packed_matmul_scalar round each product once and add in column order (≤ cols − 1 additions);
// the SIMD GEMV fuses the product (FMA) into a lane chain of ≤ cols/N additions and ≤ 4 in the lane
// reduction; sgemm rounds a product at most once and adds it ≤ cols times. With M = Σ_c |Ŵ_c·x_c| (Higham,
// Accuracy and Stability, §3.1: |ŷ − y| ≤ γ_k·M, γ_k = k·u/(1 − k·u), u = 2⁻²⁴), k = cols + 16 bounds them
// all; the double reference adds ~cols·2⁻⁵³·M (slack 1e-12·M).
#include "kernels/billm_matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "formats/random_billm.h"
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
  double frac;
  bool mixed;  // blocks cycle through none salient / all salient / frac
};
const Case kCases[] = {{1, 128, 128, 0.1, false},   {3, 256, 64, 0.0, false},    {17, 384, 128, 0.15, true},
                       {40, 1024, 128, 0.1, false}, {7, 64, 32, 1.0, false},     {5, 512, 256, 0.5, false},
                       {9, 96, 32, 0.3, true},      {129, 512, 128, 0.1, false}, {2, 32, 32, 0.5, false},
                       {11, 160, 160, 0.2, false},  {13, 192, 64, 0.05, true},   {33, 2048, 128, 0.03, true}};

::testing::Message describe(const Case& cs) {
  return ::testing::Message() << cs.rows << "x" << cs.cols << " g" << cs.gs << " f" << cs.frac
                              << (cs.mixed ? " mixed" : "");
}

TEST(BillmMatmul, DequantizeRowsIsBitwiseTheReferenceOnEveryTarget) {
  std::mt19937 rng(11);
  for (const Case& cs : kCases) {
    const test::RandomBillm p = test::random_billm(cs.rows, cs.cols, cs.gs, cs.frac, rng, cs.mixed);
    SCOPED_TRACE(describe(cs));
    std::vector<float> ref(size_t(cs.rows * cs.cols));
    billm_dequantize_rows_scalar(*p.w, 0, cs.rows, ref.data());
    test::for_each_simd_target([&] {
      std::vector<float> out(ref.size(), NAN);
      billm_dequantize_rows(*p.w, 0, cs.rows, out.data());
      EXPECT_EQ(std::memcmp(out.data(), ref.data(), ref.size() * 4), 0);
      std::fill(out.begin(), out.end(), NAN);
      format_kernels(billm_format()).dequantize_rows(*p.w, 0, cs.rows, out.data());
      EXPECT_EQ(std::memcmp(out.data(), ref.data(), ref.size() * 4), 0);
      if (cs.rows >= 3) {
        std::vector<float> mid(size_t(2 * cs.cols), NAN);
        billm_dequantize_rows(*p.w, 1, 2, mid.data());
        EXPECT_EQ(std::memcmp(mid.data(), ref.data() + cs.cols, mid.size() * 4), 0);
      }
    });
  }
}

// x_t = e_{c_t}: y[t][r] = Ŵ[r][c_t]·1 with every other product an exact zero, so the GEMV's result is the
// value its selects built for that lane, to compare with the dequantizer (== rather than bits: a zero weight
// may come out +0 from −0 + 0).
TEST(BillmMatmul, GemvLaneValuesAreTheDequantizersOnEveryTarget) {
  std::mt19937 rng(13);
  for (const Case& cs : kCases) {
    const test::RandomBillm p = test::random_billm(cs.rows, cs.cols, cs.gs, cs.frac, rng, cs.mixed);
    SCOPED_TRACE(describe(cs));
    std::vector<float> ref(size_t(cs.rows * cs.cols));
    billm_dequantize_rows_scalar(*p.w, 0, cs.rows, ref.data());
    test::for_each_simd_target([&] {
      for (int64_t c0 = 0; c0 < cs.cols; c0 += 4) {
        const int64_t n = std::min<int64_t>(4, cs.cols - c0);
        std::vector<float> x(size_t(n * cs.cols), 0.0f), y(size_t(n * cs.rows), NAN);
        for (int64_t t = 0; t < n; ++t) x[size_t(t * cs.cols + c0 + t)] = 1.0f;
        billm_gemv(*p.w, x.data(), n, y.data());
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = 0; r < cs.rows; ++r)
            ASSERT_EQ(y[size_t(t * cs.rows + r)], ref[size_t(r * cs.cols + c0 + t)])
                << "row " << r << " column " << c0 + t << " n=" << n;
      }
    });
  }
}

// The GEMV converts the parameters by vector: exact for subnormal fp16 too (every parameter here is one).
TEST(BillmMatmul, GemvLaneValuesWithSubnormalParametersOnEveryTarget) {
  const int64_t rows = 3, cols = 64;
  std::vector<uint8_t> sal(cols), a(rows * cols), b(rows * cols);
  for (int64_t c = 0; c < cols; ++c) sal[size_t(c)] = c % 3 == 0;
  for (size_t i = 0; i < a.size(); ++i) a[i] = (i * 7) % 5 < 2, b[i] = (i * 11) % 3 == 0;
  std::vector<float> par(size_t(rows * 2 * 7));
  for (size_t i = 0; i < par.size(); ++i)
    par[i] = std::ldexp(float(int(i % 1023) + 1), -24) * (i % 2 ? -1 : 1);
  auto w = make_billm(rows, cols, 32, sal.data(), a.data(), b.data(), par.data());
  std::vector<float> ref(size_t(rows * cols));
  billm_dequantize_rows_scalar(*w, 0, rows, ref.data());
  test::for_each_simd_target([&] {
    for (int64_t c = 0; c < cols; ++c) {
      std::vector<float> x(size_t(cols), 0.0f), y(size_t(rows), NAN);
      x[size_t(c)] = 1.0f;
      billm_gemv(*w, x.data(), 1, y.data());
      for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(y[size_t(r)], ref[size_t(r * cols + c)]) << r << " " << c;
    }
  });
}

TEST(BillmMatmul, MatmulMatchesTheDoubleReferenceOnEveryTarget) {
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const Case& cs : kCases) {
    const test::RandomBillm p = test::random_billm(cs.rows, cs.cols, cs.gs, cs.frac, rng, cs.mixed);
    std::vector<float> wq(size_t(cs.rows * cs.cols));
    billm_dequantize_rows_scalar(*p.w, 0, cs.rows, wq.data());
    for (int64_t n : {1, 2, 3, 4, 5, 17}) {
      SCOPED_TRACE(describe(cs) << " n=" << n);
      std::vector<float> x(size_t(n * cs.cols));
      for (float& v : x) v = nd(rng);
      std::vector<double> exact(size_t(n * cs.rows)), mag(size_t(n * cs.rows));
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < cs.rows; ++r) {
          double s = 0, m = 0;
          for (int64_t c = 0; c < cs.cols; ++c) {
            const double term = double(wq[size_t(r * cs.cols + c)]) * double(x[size_t(t * cs.cols + c)]);
            s += term;
            m += std::fabs(term);
          }
          exact[size_t(t * cs.rows + r)] = s;
          mag[size_t(t * cs.rows + r)] = m;
        }
      const double tol = gamma(cs.cols + 16) + 1e-12;
      auto check = [&](const std::vector<float>& y, const char* what) {
        for (size_t i = 0; i < y.size(); ++i)
          ASSERT_LE(std::fabs(double(y[i]) - exact[i]), tol * mag[i]) << what << " " << i;
      };
      std::vector<float> ys(size_t(n * cs.rows), NAN);
      billm_matmul_scalar(*p.w, x.data(), n, ys.data());
      check(ys, "scalar twin");
      std::vector<float> yt(ys.size(), NAN);
      format_kernels(billm_format()).matmul_scalar(*p.w, x.data(), n, yt.data());
      EXPECT_EQ(std::memcmp(yt.data(), ys.data(), ys.size() * 4), 0);
      std::fill(yt.begin(), yt.end(), NAN);
      packed_matmul_scalar(*p.w, x.data(), n, yt.data());
      check(yt, "dot-product oracle");
      test::for_each_simd_target([&] {
        std::vector<float> y(ys.size(), NAN);
        format_kernels(billm_format()).matmul(*p.w, x.data(), n, y.data());
        check(y, n <= 4 ? "simd gemv" : "panels + sgemm");
        if (n <= 4) {
          std::vector<float> y2(ys.size(), NAN);
          billm_gemv(*p.w, x.data(), n, y2.data());
          EXPECT_EQ(std::memcmp(y2.data(), y.data(), y.size() * 4), 0);
        }
      });
    }
  }
}

TEST(BillmMatmul, BadArgumentsAreOneLineErrors) {
  std::mt19937 rng(14);
  const test::RandomBillm p = test::random_billm(4, 64, 32, 0.1, rng);
  std::vector<float> x(5 * 64), y(5 * 4);
  EXPECT_EQ(test::error_of([&] { billm_gemv(*p.w, x.data(), 5, y.data()); }),
            "billm_gemv: 5 tokens (supports 1..4)");
  EXPECT_EQ(test::error_of([&] { billm_dequantize_rows(*p.w, 3, 2, y.data()); }),
            "billm_dequantize_rows: rows [3, 5) outside [0, 4)");
  BillmWeight bad = *p.w;
  bad.plane2 = nullptr;
  EXPECT_EQ(test::error_of([&] { billm_gemv(bad, x.data(), 1, y.data()); }),
            "billm_gemv: missing billm buffers");
}

}  // namespace
}  // namespace lowbit
