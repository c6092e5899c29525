// NF4 kernels: SIMD (every Highway target this CPU supports) vs the scalar oracle and a double-precision
// reference, for f32 and double-quantized absmax, with and without ICQ's τ, several shapes and 1..37 tokens.
//
// Tolerances.
// * Dequantization: the SIMD kernel looks each weight up in a per-block table whose entries are computed with
//   the reference's own two f32 roundings (NF4[k]·A, then + τ), so it must equal nf4_dequantize_rows_scalar
//   bitwise.
// * y = Σ_c Ŵ_c·x_c over exact f32 weights Ŵ (the reference dequantizer's output). The scalar oracle (a plain
//   sum in column order), the decode GEMV (lanes, two accumulators per token, FMA, a final lane reduction)
//   and the prefill path (sgemm over dequantized panels) are each this dot product in some order, so each is
//   within γ_{cols+16}·M of the exact value, M = Σ_c |Ŵ_c·x_c| (Higham, Accuracy and Stability, §3.1; γ_k =
//   k·u/(1 − k·u), u = 2⁻²⁴; an FMA rounds once where a product and a sum round twice, and the 16 covers the
//   lane reduction). The double reference errs by ≈ 2⁻⁵³·cols·M; a slack of 1e-12·M covers it.
#include "kernels/nf4_matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "formats/random_nf4.h"
#include "kernels/format_kernels.h"
#include "test_util.h"

namespace lowbit {
namespace {

double gamma(int64_t k) {
  const double u = std::ldexp(1.0, -24);
  return double(k) * u / (1 - double(k) * u);
}

struct Case {
  int64_t rows, cols;
};
const Case kCases[] = {{1, 64}, {3, 128}, {17, 384}, {40, 1024}, {300, 64}};

TEST(Nf4Matmul, DequantizeRowsIsBitwiseTheReferenceOnEveryTarget) {
  std::mt19937 rng(11);
  for (const Case& cs : kCases)
    for (bool dq : {false, true})
      for (bool icq : {false, true}) {
        const test::RandomNf4 p = test::random_nf4(cs.rows, cs.cols, dq, icq, rng);
        SCOPED_TRACE(::testing::Message() << cs.rows << "x" << cs.cols << " dq=" << dq << " icq=" << icq);
        std::vector<float> ref(size_t(cs.rows * cs.cols));
        nf4_dequantize_rows_scalar(p.w, 0, cs.rows, ref.data());
        test::for_each_simd_target([&] {
          std::vector<float> out(ref.size(), NAN);
          nf4_dequantize_rows(p.w, 0, cs.rows, out.data());
          EXPECT_EQ(std::memcmp(out.data(), ref.data(), ref.size() * 4), 0);
          // A row range in the middle starts at its own blocks.
          if (cs.rows >= 3) {
            std::vector<float> mid(size_t(2 * cs.cols));
            nf4_dequantize_rows(p.w, 1, 2, mid.data());
            EXPECT_EQ(std::memcmp(mid.data(), ref.data() + cs.cols, mid.size() * 4), 0);
          }
        });
      }
}

TEST(Nf4Matmul, MatmulMatchesScalarAndDoubleReferenceOnEveryTarget) {
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const Case& cs : kCases)
    for (bool dq : {false, true})
      for (bool icq : {false, true}) {
        const test::RandomNf4 p = test::random_nf4(cs.rows, cs.cols, dq, icq, rng);
        std::vector<float> wf(size_t(cs.rows * cs.cols));
        nf4_dequantize_rows_scalar(p.w, 0, cs.rows, wf.data());
        for (int64_t n : {1, 2, 3, 4, 5, 9, 37}) {
          SCOPED_TRACE(::testing::Message()
                       << cs.rows << "x" << cs.cols << " dq=" << dq << " icq=" << icq << " n=" << n);
          std::vector<float> x(size_t(n * cs.cols));
          for (float& v : x) v = nd(rng);
          std::vector<double> exact(size_t(n * cs.rows)), mag(size_t(n * cs.rows));
          for (int64_t t = 0; t < n; ++t)
            for (int64_t r = 0; r < cs.rows; ++r) {
              double s = 0, m = 0;
              for (int64_t c = 0; c < cs.cols; ++c) {
                const double prod = double(wf[size_t(r * cs.cols + c)]) * x[size_t(t * cs.cols + c)];
                s += prod;
                m += std::fabs(prod);
              }
              exact[size_t(t * cs.rows + r)] = s;
              mag[size_t(t * cs.rows + r)] = m;
            }
          const double g = gamma(cs.cols + 16);
          auto check = [&](const std::vector<float>& y, const char* what) {
            for (size_t i = 0; i < y.size(); ++i)
              ASSERT_LE(std::fabs(double(y[i]) - exact[i]), g * mag[i] + 1e-12 * mag[i]) << what << " " << i;
          };
          std::vector<float> ys(size_t(n * cs.rows));
          nf4_matmul_scalar(p.w, x.data(), n, ys.data());
          check(ys, "scalar");
          test::for_each_simd_target([&] {
            std::vector<float> y(ys.size(), NAN);
            format_kernels(nf4_format()).matmul(p.w, x.data(), n, y.data());
            check(y, "simd");
          });
        }
      }
}

TEST(Nf4Matmul, GemvChecksItsArguments) {
  std::mt19937 rng(13);
  const test::RandomNf4 p = test::random_nf4(2, 64, true, false, rng);
  std::vector<float> x(5 * 64), y(10);
  EXPECT_THROW(nf4_gemv(p.w, x.data(), 5, y.data()), Error);
  Nf4Weight w = p.w;
  w.cols = 96;  // not a whole number of blocks
  EXPECT_THROW(nf4_gemv(w, x.data(), 1, y.data()), Error);
}

}  // namespace
}  // namespace lowbit
