// Packed quantized kernels: SIMD (every Highway target this CPU supports) vs the scalar oracles and an exact
// double-precision reference, for bit widths 2..8, several group sizes (incl. per-channel and sizes whose
// groups do not start on a byte boundary), ragged shapes, 1..37 tokens, with and without act-order g_idx.
//
// Tolerances.
// * Dequantization is exact: S is fp16 (11 significant bits) and q − Z an integer with |q − Z| < 2^9, so
//   S·(q − Z) has at most 20 significant bits and the single f32 multiply does not round. SIMD and scalar
//   must therefore agree bitwise, and both equal the double-precision value.
// * y = Σ_c S_g(c)·(q_c − Z_g(c))·x_c. The scalar oracle, the act-order/5..7-bit path (exact dequantized row
// · x)
//   and the prefill path (sgemm over exact dequantized rows) are dot products of exact weights, in some
//   summation order: error ≤ γ_cols·Σ|S·(q − Z)·x| (Higham, Accuracy and Stability, §3.1; γ_k = k·u/(1 −
//   k·u), u = 2⁻²⁴), and Σ|S·(q − Z)·x| ≤ M := Σ_g |S_g|·(Σ_{c∈g}|q_c·x_c| + |Z_g|·Σ_{c∈g}|x_c|).
// * The fused decode GEMV reassociates: ŷ = Σ_g S_g·(Σ_{c∈g} q_c·x_c) − Σ_g S_g·Z_g·(Σ_{c∈g} x_c). A term
//   S_g·q_c·x_c passes through one product, ≤ gs additions inside its group (lanes, planes, head/tail), one
//   multiply by S_g, ≤ G additions across groups and ≤ 8 in the final lane reduction; a term S_g·Z_g·x_c
//   through the rounded group sum Σx, ×Z, ×S, a subtraction and ≤ G + 1 additions. Since gs + G ≤ cols + 1,
//   every term carries at most cols + 16 relative roundings, so |ŷ − y| ≤ γ_{cols+16}·M. The Z·Σx part of M
//   is the cancellation term: when q ≈ Z, |y| is small but the two sums are not, and the error scales with
//   them.
// The double reference has error ≈ 2⁻⁵³·cols·M, far below these; a slack of 1e-12·M covers it.
#include "kernels/affine_matmul.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/random_affine.h"
#include "kernels/dense.h"
#include "kernels/format_kernels.h"

namespace lowbit {
namespace {

using Packed = test::RandomAffine;

Packed make_packed(int bits, int64_t rows, int64_t cols, int64_t gs, bool act_order, std::mt19937& rng) {
  return test::random_affine(bits, rows, cols, gs, act_order, rng);
}

// Ŵ[r][c] in double straight from the generated codes.
double exact_weight(const Packed& p, int64_t r, int64_t c) {
  const int64_t g = p.w.group_of(c), G = p.w.n_groups();
  return double(f16_to_f32(p.scales[size_t(r * G + g)])) *
         (double(p.q[size_t(r * p.w.cols + c)]) - double(p.zeros[size_t(r * G + g)]));
}

double gamma(int64_t k) {
  const double u = std::ldexp(1.0, -24);
  return double(k) * u / (1 - double(k) * u);
}

// Runs body once per Highway target compiled in and supported here, with dispatch pinned to it.
template <typename F>
void for_each_target(F&& body) {
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  for (int64_t t : targets) {
    hwy::SetSupportedTargetsForTest(t);
    SCOPED_TRACE(hwy::TargetName(t));
    EXPECT_STREQ(simd_target_name(), hwy::TargetName(t));  // the pin took effect
    body();
  }
  hwy::SetSupportedTargetsForTest(0);
}

struct Shape {
  int64_t cols, group;
};
// Group sizes 32/64/128/per-channel where they divide cols, plus sizes whose groups start off byte boundaries
// (25, 125) or off vector-block boundaries (40, 200) to exercise the one-code-at-a-time head/tail paths.
const Shape kShapes[] = {{96, 32},  {96, 96},   {200, 40},  {200, 25},   {200, 200},  {384, 32},
                         {384, 64}, {384, 128}, {384, 384}, {1000, 125}, {1000, 200}, {1000, 1000}};

std::string describe(int bits, int64_t rows, const Shape& s, bool act) {
  return "bits=" + std::to_string(bits) + " rows=" + std::to_string(rows) +
         " cols=" + std::to_string(s.cols) + " group=" + std::to_string(s.group) + (act ? " act-order" : "");
}

TEST(AffineFormat, PackCodeRoundTripsAgainstBitLevelReference) {
  std::mt19937 rng(5);
  for (int bits = 2; bits <= 8; ++bits)
    for (int64_t len : {1, 3, 5, 8, 13, 37, 100, 129}) {
      std::vector<uint32_t> q(static_cast<size_t>(len));
      for (auto& v : q) v = rng() & ((1u << bits) - 1);
      const size_t nbytes = (size_t(len) * size_t(bits) + 7) / 8;
      // Reference: bit k of code c is stream bit c·bits + k, stream bit j is bit j % 8 of byte j / 8.
      std::vector<uint8_t> ref(nbytes, 0);
      for (int64_t c = 0; c < len; ++c)
        for (int k = 0; k < bits; ++k)
          if (q[size_t(c)] >> k & 1) {
            const int64_t j = c * bits + k;
            ref[size_t(j / 8)] |= uint8_t(1u << (j % 8));
          }
      // Pack in a scrambled order: each code lands at its own (ragged) bit offset regardless of neighbours.
      std::vector<int64_t> order(static_cast<size_t>(len));
      for (int64_t c = 0; c < len; ++c) order[size_t(c)] = c;
      std::shuffle(order.begin(), order.end(), rng);
      std::vector<uint8_t> row(nbytes, 0);
      for (int64_t c : order) pack_code(row.data(), bits, c, q[size_t(c)]);
      ASSERT_EQ(row, ref) << "bits=" << bits << " len=" << len;
      for (int64_t c = 0; c < len; ++c)
        ASSERT_EQ(packed_code(row.data(), bits, c), q[size_t(c)]) << "bits=" << bits << " c=" << c;
      AffineWeight w;
      w.bits = bits, w.cols = len;
      EXPECT_EQ(w.row_bytes(), nbytes);
    }
}

TEST(AffineKernel, DequantizeRowsIsExactAndBitwiseEqualToScalar) {
  std::mt19937 rng(17);
  for (int bits = 2; bits <= 8; ++bits)
    for (const Shape& s : kShapes)
      for (bool act : {false, true})
        for (int64_t rows : {1, 7, 67}) {
          const Packed p = make_packed(bits, rows, s.cols, s.group, act, rng);
          SCOPED_TRACE(describe(bits, rows, s, act));
          std::vector<float> ref(size_t(rows * s.cols));
          affine_dequantize_rows_scalar(p.w, 0, rows, ref.data());
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < s.cols; ++c)
              ASSERT_EQ(double(ref[size_t(r * s.cols + c)]), exact_weight(p, r, c))
                  << "r=" << r << " c=" << c;
          const int64_t r0 = rows / 3, nr = rows - r0;  // a sub-range too
          for_each_target([&] {
            std::vector<float> out(size_t(rows * s.cols), -1.0f), part(size_t(nr * s.cols), -1.0f);
            affine_dequantize_rows(p.w, 0, rows, out.data());
            EXPECT_EQ(std::memcmp(out.data(), ref.data(), out.size() * sizeof(float)), 0);
            affine_dequantize_rows(p.w, r0, nr, part.data());
            EXPECT_EQ(std::memcmp(part.data(), ref.data() + r0 * s.cols, part.size() * sizeof(float)), 0);
          });
        }
}

TEST(AffineKernel, MatmulMatchesExactReferenceWithinDerivedBound) {
  std::mt19937 rng(23);
  int64_t checked = 0;
  for (int bits = 2; bits <= 8; ++bits)
    for (const Shape& s : kShapes)
      for (bool act : {false, true})
        for (int64_t rows : {1, 7, 67}) {
          const Packed p = make_packed(bits, rows, s.cols, s.group, act, rng);
          SCOPED_TRACE(describe(bits, rows, s, act));
          std::vector<double> wd(size_t(rows * s.cols));
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < s.cols; ++c) wd[size_t(r * s.cols + c)] = exact_weight(p, r, c);
          // 1..4 tokens: fused GEMV; 5, 37: dequantized panels + sgemm.
          for (int64_t n : {1, 2, 3, 4, 5, 37}) {
            std::normal_distribution<float> nd(0, 1);
            std::vector<float> x(size_t(n * s.cols));
            for (auto& v : x) v = nd(rng);
            std::vector<double> exact(size_t(n * rows)), tol(size_t(n * rows));
            const int64_t G = p.w.n_groups();
            for (int64_t t = 0; t < n; ++t)
              for (int64_t r = 0; r < rows; ++r) {
                double e = 0, m = 0;
                for (int64_t c = 0; c < s.cols; ++c) {
                  const double xc = x[size_t(t * s.cols + c)];
                  const int64_t g = p.w.group_of(c);
                  const double sg = std::fabs(double(f16_to_f32(p.scales[size_t(r * G + g)])));
                  e += wd[size_t(r * s.cols + c)] * xc;
                  m += sg * (double(p.q[size_t(r * s.cols + c)]) + double(p.zeros[size_t(r * G + g)])) *
                       std::fabs(xc);
                }
                exact[size_t(t * rows + r)] = e;
                tol[size_t(t * rows + r)] = gamma(s.cols + 16) * m + 1e-12 * m;
                // The bound must be tight enough to see one wrong code (|ΔŴ| ≥ the smallest |S|).
                ASSERT_LT(tol[size_t(t * rows + r)], 1e-3 * m);
              }
            std::vector<float> ys(size_t(n * rows));
            packed_matmul_scalar(p.w, x.data(), n, ys.data());
            for (size_t i = 0; i < ys.size(); ++i)
              ASSERT_NEAR(ys[i], exact[i], tol[i]) << "scalar n=" << n << " i=" << i;
            for_each_target([&] {
              std::vector<float> y(size_t(n * rows), NAN);
              affine_matmul(p.w, x.data(), n, y.data());
              for (size_t i = 0; i < y.size(); ++i)
                ASSERT_NEAR(y[i], exact[i], tol[i]) << "n=" << n << " i=" << i;
            });
            ++checked;
          }
        }
  EXPECT_EQ(checked, 7 * 12 * 2 * 3 * 6);
}

TEST(AffineKernel, LargeGemvMatchesReference) {
  // Enough rows to go multithreaded and a 4096-wide row (many blocks per group) at the bench's group size.
  std::mt19937 rng(31);
  for (int bits : {2, 3, 4, 8}) {
    const int64_t rows = 300, cols = 4096;
    const Packed p = make_packed(bits, rows, cols, 128, false, rng);
    std::vector<float> x(static_cast<size_t>(cols));
    std::normal_distribution<float> nd(0, 1);
    for (auto& v : x) v = nd(rng);
    std::vector<float> y(static_cast<size_t>(rows)), ys(static_cast<size_t>(rows));
    affine_matmul(p.w, x.data(), 1, y.data());
    packed_matmul_scalar(p.w, x.data(), 1, ys.data());
    for (int64_t r = 0; r < rows; ++r) {
      double m = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t g = c / 128;
        m += std::fabs(double(f16_to_f32(p.scales[size_t(r * 32 + g)]))) *
             (double(p.q[size_t(r * cols + c)]) + p.zeros[size_t(r * 32 + g)]) * std::fabs(x[size_t(c)]);
      }
      // both within γ·M of the exact value
      ASSERT_NEAR(y[size_t(r)], ys[size_t(r)], 2 * gamma(cols + 16) * m) << "bits=" << bits << " r=" << r;
    }
  }
}

TEST(AffineKernel, RejectsMalformedWeights) {
  std::mt19937 rng(1);
  Packed p = make_packed(4, 3, 64, 32, true, rng);
  std::vector<float> x(64 * 5), y(3 * 5);
  AffineWeight bad = p.w;
  bad.bits = 9;
  EXPECT_THROW(affine_matmul(bad, x.data(), 1, y.data()), Error);
  bad = p.w;
  bad.group_size = 48;  // does not divide 64
  EXPECT_THROW(affine_matmul(bad, x.data(), 5, y.data()), Error);
  bad = p.w;
  bad.zeros = nullptr;
  EXPECT_THROW(affine_dequantize_rows(bad, 0, 1, y.data()), Error);
  p.g_idx[7] = 2;  // only groups 0, 1 exist
  EXPECT_THROW(affine_matmul(p.w, x.data(), 1, y.data()), Error);
  p.g_idx[7] = 0;
  EXPECT_THROW(affine_dequantize_rows(p.w, 2, 2, y.data()), Error);  // rows [2, 4) of 3
  EXPECT_THROW(affine_gemv(p.w, x.data(), 5, y.data()), Error);
}

}  // namespace
}  // namespace lowbit
