// Partial-binarization kernels: SIMD (every Highway target this CPU supports) vs the reference dequantizer
// (bitwise) and vs a double-precision product (with a derived tolerance), for the GEMV (n = 1..4), the panel
// path (n > 4), the decomposition's scalar twin and the generic dot-product oracle; groups of 32 to 256,
// salient fractions from none to all (empty and full groups), odd row counts (the GEMV's two-row steps), and
// a shape large enough for the OpenMP paths.
//
// Tolerance. With c = μ − α per group and v = S·(q − Z) per salient weight, the GEMV and its twin compute
//   y = Σ_g [2α·Σ_{b=1} x + c·Σ_{c∈g} x] + Σ_salient (v − c)·x
// whose terms are 2α·x_j (binarized, b = 1), c·x_j (every column) and (v − c)·x_j (salient). Each term is
// rounded a bounded number of times k (Higham, Accuracy and Stability, §3.1: |ŷ − y| ≤ γ_k·M, γ_k =
// k·u/(1 − k·u), u = 2⁻²⁴), with M the sum of the terms' magnitudes:
//   M = Σ_j |x_j|·(|c| + [b_j ∧ ¬salient_j]·2|α| + [salient_j]·(|v_j| + |c|)).
// * twin: ≤ gs − 1 roundings in a group sum, 1 for the product, 2 per group into the row total (≤ 2G); c and
//   v − c one each, v itself one (q − Z is an exact integer), ≤ cols accumulating the salient terms.
// * SIMD GEMV: the same with ≤ gs/N lane-chain roundings, ≤ 4 in the lane reduction, 1 adding the scalar
// part.
// * panels (sgemm) and packed_matmul_scalar: Ŵ = fl(μ ± α) or fl(S·(q − Z)), 1 rounding, and ≤ cols in the
//   dot product; M ≥ Σ|Ŵ_j||x_j| since |μ ± α| ≤ |c| + 2|α|.
// So k = 2·cols + 2G + 16 bounds them all; the double reference adds ~cols·2⁻⁵³·M (slack 1e-12·M).
#include "kernels/pbllm_matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "formats/random_pbllm.h"
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
};
const Case kCases[] = {{1, 128, 128, 0.1}, {3, 256, 64, 0.0},  {17, 384, 128, 0.15}, {40, 1024, 128, 0.1},
                       {7, 64, 32, 1.0},   {5, 512, 256, 0.5}, {9, 96, 32, 0.3},     {129, 512, 128, 0.1}};

TEST(PbllmMatmul, DequantizeRowsIsBitwiseTheReferenceOnEveryTarget) {
  std::mt19937 rng(11);
  for (const Case& cs : kCases) {
    const test::RandomPbllm p = test::random_pbllm(cs.rows, cs.cols, cs.gs, cs.frac, rng);
    SCOPED_TRACE(::testing::Message() << cs.rows << "x" << cs.cols << " g" << cs.gs << " f" << cs.frac);
    std::vector<float> ref(size_t(cs.rows * cs.cols));
    pbllm_dequantize_rows_scalar(*p.w, 0, cs.rows, ref.data());
    test::for_each_simd_target([&] {
      std::vector<float> out(ref.size(), NAN);
      pbllm_dequantize_rows(*p.w, 0, cs.rows, out.data());
      EXPECT_EQ(std::memcmp(out.data(), ref.data(), ref.size() * 4), 0);
      if (cs.rows >= 3) {
        std::vector<float> mid(size_t(2 * cs.cols), NAN);
        pbllm_dequantize_rows(*p.w, 1, 2, mid.data());
        EXPECT_EQ(std::memcmp(mid.data(), ref.data() + cs.cols, mid.size() * 4), 0);
      }
    });
  }
}

TEST(PbllmMatmul, MatmulMatchesTheDoubleReferenceOnEveryTarget) {
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const Case& cs : kCases) {
    const test::RandomPbllm p = test::random_pbllm(cs.rows, cs.cols, cs.gs, cs.frac, rng);
    const int64_t G = cs.cols / cs.gs;
    for (int64_t n : {1, 2, 3, 4, 5, 17}) {
      SCOPED_TRACE(::testing::Message()
                   << cs.rows << "x" << cs.cols << " g" << cs.gs << " f" << cs.frac << " n=" << n);
      std::vector<float> x(size_t(n * cs.cols));
      for (float& v : x) v = nd(rng);
      std::vector<double> exact(size_t(n * cs.rows)), mag(size_t(n * cs.rows));
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < cs.rows; ++r) {
          double s = 0, m = 0;
          for (int64_t c = 0; c < cs.cols; ++c) {
            const size_t i = size_t(r * cs.cols + c), g = size_t(r * G + c / cs.gs);
            const double mu = f16_to_f32(f32_to_f16(p.mu[g])), a = f16_to_f32(f32_to_f16(p.alpha[g]));
            const double v = double(p.S[size_t(r)]) * (double(p.codes[i]) - double(p.Z[size_t(r)]));
            const double xc = x[size_t(t * cs.cols + c)];
            const double w = p.salient[i] ? v : (p.sign[i] ? mu + a : mu - a);
            s += w * xc;
            m += std::fabs(xc) * (std::fabs(mu - a) + (!p.salient[i] && p.sign[i] ? 2 * std::fabs(a) : 0) +
                                  (p.salient[i] ? std::fabs(v) + std::fabs(mu - a) : 0));
          }
          exact[size_t(t * cs.rows + r)] = s;
          mag[size_t(t * cs.rows + r)] = m;
        }
      const double tol = gamma(2 * cs.cols + 2 * G + 16) + 1e-12;
      auto check = [&](const std::vector<float>& y, const char* what) {
        for (size_t i = 0; i < y.size(); ++i)
          ASSERT_LE(std::fabs(double(y[i]) - exact[i]), tol * mag[i]) << what << " " << i;
      };
      std::vector<float> ys(size_t(n * cs.rows), NAN);
      pbllm_matmul_scalar(*p.w, x.data(), n, ys.data());
      check(ys, "scalar twin");
      std::vector<float> yt(ys.size(), NAN);
      format_kernels(pbllm_format()).matmul_scalar(*p.w, x.data(), n, yt.data());
      EXPECT_EQ(std::memcmp(yt.data(), ys.data(), ys.size() * 4), 0);
      std::fill(ys.begin(), ys.end(), NAN);
      packed_matmul_scalar(*p.w, x.data(), n, ys.data());
      check(ys, "dot-product oracle");
      test::for_each_simd_target([&] {
        std::vector<float> y(ys.size(), NAN);
        format_kernels(pbllm_format()).matmul(*p.w, x.data(), n, y.data());
        check(y, n <= 4 ? "simd gemv" : "panels + sgemm");
      });
    }
  }
}

}  // namespace
}  // namespace lowbit
