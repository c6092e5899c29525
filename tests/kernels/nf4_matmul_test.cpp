// NF4 kernels: SIMD (every Highway target this CPU supports) vs the scalar oracle and a double-precision
// reference, for f32 and double-quantized absmax, with and without ICQ's τ, several shapes and 1..37 tokens.
//
// Tolerances.
// * Dequantization: the SIMD kernel looks each weight up in the per-block table the reference dequantizer
//   uses (NF4[k]·A, then + τ, each rounded to f32), so it must equal nf4_dequantize_rows_scalar bitwise.
// * y = Σ_c Ŵ_c·x_c. The scalar oracle (a plain sum over exact f32 weights Ŵ in column order) and the prefill
//   path (sgemm over dequantized panels) are this dot product in some order: within γ_cols·Σ|Ŵ_c·x_c| of it
//   (Higham, Accuracy and Stability, §3.1; γ_k = k·u/(1 − k·u), u = 2⁻²⁴).
// * The decode GEMV reassociates: ŷ = Σ_b A_b·(Σ_{c∈b} NF4[q_c]·x_c) + Σ_b τ_b·(Σ_{c∈b} x_c). A term
//   NF4·x·A passes through ≤ 64 roundings in its block's FMA chains, 2 when the block sum is scaled into the
//   total, ≤ cols/64 across blocks, ≤ 16 in the lane reduction and 1 for adding the τ part; a τ·x term
//   through the rounded block sum of x, ×τ and ≤ cols/64 + 1 additions; and Ŵ itself differs from NF4·A (+ τ)
//   by one or two roundings. All of it is ≤ cols + 64 relative roundings per term for cols ≥ 64, so
//   |ŷ − y| ≤ γ_{cols+64}·M with M = Σ_c (|NF4[q_c]·A·x_c| + |τ·x_c|) ≥ Σ|Ŵ·x|/(1 + 2u). The τ part of M is
//   the cancellation term: where NF4·A ≈ −τ, Ŵ is small but the two sums are not.
// The double reference (Σ Ŵ·x) has error ≈ 2⁻⁵³·cols·M; a slack of 1e-12·M covers it.
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
                const int64_t b = (r * cs.cols + c) / 64;
                const double xc = x[size_t(t * cs.cols + c)];
                s += double(wf[size_t(r * cs.cols + c)]) * xc;
                m += std::fabs(double(kNf4Values[nf4_packed_code(p.w.codes, r * cs.cols + c)]) *
                               p.w.block_absmax(b) * xc);
                if (icq) m += std::fabs(double(p.w.block_tau(b)) * xc);
              }
              exact[size_t(t * cs.rows + r)] = s;
              mag[size_t(t * cs.rows + r)] = m;
            }
          const double g = gamma(cs.cols + 64);
          auto check = [&](const std::vector<float>& y, const char* what) {
            for (size_t i = 0; i < y.size(); ++i)
              ASSERT_LE(std::fabs(double(y[i]) - exact[i]), g * mag[i] + 1e-12 * mag[i]) << what << " " << i;
          };
          std::vector<float> ys(size_t(n * cs.rows));
          packed_matmul_scalar(p.w, x.data(), n, ys.data());
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
