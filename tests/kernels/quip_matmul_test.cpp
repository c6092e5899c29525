// QuIP kernels (kernels/quip_matmul.h): quip_matmul (Highway rotations around the affine kernels on the
// centred codes, every target this CPU supports) and its scalar twin quip_matmul_scalar against the dense
// double product x·Ŵᵀ with Ŵ from the format's reference dequantizer (formats/quip_test.cpp checks that one
// against an independent dense Uᵀ·Ŵ′·V·diag(1/d)), for both rotation kinds, 2, 3 and 4 bits, shapes wide and
// tall (128×384, 384×128, 1024×384) and small with ragged SIMD tails and odd packed rows (24×40), and 1, 2, 4
// (the affine GEMV), 5 and 33 (per-panel dequantization + sgemm) tokens; quip_dequantize_rows against the
// reference dequantizer; the format table's entry.
//
// Tolerances (u = 2⁻²⁴, γ_k = k·u/(1 − k·u); Higham, Accuracy and Stability, §3.1; k_U, k_V the roundings
// of an f32 rotation of U and V, random_quip.h's rotation_roundings: p1 + p2, or log2(n/m) + m + 2). Write
// z = |V|·|x ⊘ d| (the magnitude of the rotated input), z0 = (maxq − 1)/2 (the centred view's zero point) and
//     G_k = (2s/maxq)·Σ_c (q_kc + maxq/2)·z_c,   M = |U|ᵀ·G.
// G bounds every partial result of the middle product: |Ŵ′_kc| = (2s/maxq)·|q_kc − maxq/2| and the
// centred rewrite's pieces (q − z0)·v, z0·Σv (inside the affine GEMV) and ½·Σv are each at most
// (q + maxq/2)·|v| per term. Each path errs from the exact y = Uᵀ·Ŵ′·V·(x ⊘ d) (Ŵ′ = s·(2q − maxq)/maxq in
// reals) by at most γ_K·M, where K counts the roundings a term can pass through (composed with
// γ_a + γ_b + γ_a·γ_b ≤ γ_{a+b}: a later stage's error is relative to the earlier stage's rounded output,
// whose magnitude is at most (1 + γ) times the exact one's):
// * quip_matmul: x_c/d_c (1); V (k_V); the affine kernel's Σ_c (q_kc − z0)·v_c (≤ cols + 16: its own
//   derived bound, kernels/affine_matmul_test.cpp, for the fused GEMV and for sgemm over exact dequantized
//   rows); ½·Σv (its double sum ≈ exact, then 1 rounding to f32); the subtraction (1), S = fl(2s/maxq) (1)
//   and the multiply by S (1); Uᵀ (k_U): K = cols + k_U + k_V + 20.
// * quip_matmul_scalar: x/d (1), V (k_V), Ŵ′ = fl(s·fl((2q − maxq)/maxq)) (2), the f32 dot product (cols),
//   Uᵀ (k_U): cols + k_U + k_V + 3.
// * the oracle x·Ŵᵀ in double: Ŵ′ (2) and Ŵ's rounding to f32 (1), the rest in double (< 1e-12·M).
// So |ŷ − oracle| ≤ (γ_{cols + k_U + k_V + 23} + 1e-12)·M for both paths.
// quip_dequantize_rows vs the reference (both from the same f32 Ŵ′, so measured against the exact
// Ŵ = Uᵀ·Ŵ′·V·diag(1/d) with that Ŵ′, mag_rc = (|U|ᵀ·|Ŵ′|·|V|)_rc / d_c): the kernel rotates unit vectors
// (k_U), multiplies by Ŵ′ in sgemm (rows), rotates by Vᵀ (k_V) and divides by d (1); the reference rounds
// its double result once (1): tolerance (γ_{rows + k_U + k_V + 2} + 1e-12)·mag.
#include "kernels/quip_matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "formats/random_quip.h"
#include "kernels/format_kernels.h"
#include "test_util.h"

namespace lowbit {
namespace {

using test::gamma32;
using test::rotation_roundings;

struct Shape {
  int64_t rows, cols;
};
const Shape kShapes[] = {{128, 384}, {384, 128}, {24, 40}, {1024, 384}};

// The exact-ish product and its magnitude M for n tokens (see the header).
struct Oracle {
  std::vector<double> y, mag;  // (n, rows)
};

Oracle oracle(const test::RandomQuip& p, const std::vector<float>& what, const std::vector<float>& x,
              int64_t n) {
  const QuipWeight& w = *p.w;
  const int64_t rows = w.rows, cols = w.cols;
  const double maxq = w.maxq(), S = 2.0 * double(w.scale) / maxq;
  Oracle o;
  o.y.assign(size_t(n * rows), 0.0);
  o.mag.assign(size_t(n * rows), 0.0);
  std::vector<double> z(static_cast<size_t>(cols)), g(static_cast<size_t>(rows));
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x.data() + t * cols;
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += double(what[size_t(r * cols + c)]) * double(xt[c]);
      o.y[size_t(t * rows + r)] = s;
    }
    for (int64_t c = 0; c < cols; ++c) z[size_t(c)] = std::fabs(double(xt[c]) / double(w.d[c]));
    test::abs_rotate(*w.V, z.data(), false);
    for (int64_t k = 0; k < rows; ++k) {
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += (double(p.q[size_t(k * cols + c)]) + maxq / 2) * z[size_t(c)];
      g[size_t(k)] = S * s;
    }
    test::abs_rotate(*w.U, g.data(), true);
    for (int64_t r = 0; r < rows; ++r) o.mag[size_t(t * rows + r)] = g[size_t(r)];
  }
  return o;
}

TEST(QuipMatmul, MatchesTheDenseDoubleProductWithinDerivedBoundOnEveryTarget) {
  std::mt19937 rng(51);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  int64_t checked = 0;
  for (const Shape& s : kShapes)
    for (RotationKind kind : {RotationKind::Kronecker, RotationKind::Hadamard})
      for (int bits : {2, 3, 4}) {
        const test::RandomQuip p = test::random_quip(bits, s.rows, s.cols, kind, rng);
        const QuipWeight& w = *p.w;
        std::vector<float> what(size_t(s.rows * s.cols));
        quip_dequantize_rows_ref(w, 0, s.rows, what.data());
        const double tol = gamma32(s.cols + rotation_roundings(*w.U) + rotation_roundings(*w.V) + 23) + 1e-12;
        for (int64_t n : {1, 2, 4, 5, 33}) {
          SCOPED_TRACE(::testing::Message() << rotation_kind_name(kind) << " " << s.rows << "x" << s.cols
                                            << " bits=" << bits << " n=" << n);
          std::vector<float> x(size_t(n * s.cols));
          for (float& v : x) v = nd(rng);
          const Oracle o = oracle(p, what, x, n);
          auto check = [&](const std::vector<float>& y, const char* path) {
            for (size_t i = 0; i < y.size(); ++i)
              ASSERT_LE(std::fabs(double(y[i]) - o.y[i]), tol * o.mag[i]) << path << " " << i;
            checked += int64_t(y.size());
          };
          std::vector<float> ys(size_t(n * s.rows), NAN);
          quip_matmul_scalar(w, x.data(), n, ys.data());
          check(ys, "scalar twin");
          std::vector<float> yt(ys.size(), NAN);
          format_kernels(quip_format()).matmul_scalar(w, x.data(), n, yt.data());
          EXPECT_EQ(std::memcmp(yt.data(), ys.data(), ys.size() * 4), 0);  // the table's twin is that one
          test::for_each_simd_target([&] {
            std::vector<float> y(ys.size(), NAN);
            quip_matmul(w, x.data(), n, y.data());
            check(y, n <= 4 ? "simd (gemv)" : "simd (panels + sgemm)");
            std::vector<float> yk(ys.size(), NAN);
            format_kernels(quip_format()).matmul(w, x.data(), n, yk.data());
            EXPECT_EQ(std::memcmp(yk.data(), y.data(), y.size() * 4), 0);  // the table's kernel is that one
          });
        }
      }
  EXPECT_GT(checked, 0);
}

// The bound is worst-case: every rounding of every term at its largest, through two rotations whose |U|ᵀ and
// |V| are about √n times the size of the rotated vectors, so it sits far above the errors seen (about 1e-10·M
// against a tolerance of 3e-5·M) and at a sizeable fraction of the outputs. It still rejects the mistakes of
// an output's size: the ½·Σv correction with the wrong sign, U where Uᵀ belongs, x·d for x ⊘ d. Each of these
// wrong answers (built in double from the same pieces) is outside the tolerance on some output of every token
// (one is enough to fail a test): U or x·d on most outputs; the wrong-signed correction, a constant S·Σv
// added to Ŵ′·v, on a quarter to three quarters of them for Kronecker, and for Hadamard on the one output per
// token where Uᵀ·1 = diag(σ)·H_nᵀ·1 is not zero (√n there).
TEST(QuipMatmul, ToleranceRejectsWrongAnswers) {
  std::mt19937 rng(52);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (RotationKind kind : {RotationKind::Kronecker, RotationKind::Hadamard})
    for (int bits : {2, 4}) {
      SCOPED_TRACE(::testing::Message() << rotation_kind_name(kind) << " bits=" << bits);
      const int64_t rows = 128, cols = 384, n = 4;
      const test::RandomQuip p = test::random_quip(bits, rows, cols, kind, rng);
      const QuipWeight& w = *p.w;
      std::vector<float> what(size_t(rows * cols)), wq(size_t(rows * cols));
      quip_dequantize_rows_ref(w, 0, rows, what.data());
      quip_rotated_rows(w, 0, rows, wq.data());
      std::vector<float> x(size_t(n * cols));
      for (float& v : x) v = nd(rng);
      const Oracle o = oracle(p, what, x, n);
      const double tol = gamma32(cols + rotation_roundings(*w.U) + rotation_roundings(*w.V) + 23) + 1e-12;
      std::vector<float> y(size_t(n * rows));
      quip_matmul(w, x.data(), n, y.data());
      double worst = 0;
      for (size_t i = 0; i < y.size(); ++i)
        worst = std::max(worst, std::fabs(double(y[i]) - o.y[i]) / o.mag[i]);
      EXPECT_GT(worst, 0);
      EXPECT_LT(worst, tol);
      // Uᵀ·(Ŵ′·V·(x ⊙ e)) in double, with e = 1/d (right) or d (wrong), Ŵ′ shifted by `shift`·S, and U or Uᵀ.
      auto product = [&](int64_t t, bool divide, double shift, bool transpose_u) {
        std::vector<double> v(static_cast<size_t>(cols)), m(static_cast<size_t>(rows), 0.0);
        for (int64_t c = 0; c < cols; ++c)
          v[size_t(c)] = double(x[size_t(t * cols + c)]) * (divide ? 1 / double(w.d[c]) : double(w.d[c]));
        rotate_ref(*w.V, v.data(), false);
        const double S = 2.0 * double(w.scale) / w.maxq();
        for (int64_t k = 0; k < rows; ++k)
          for (int64_t c = 0; c < cols; ++c)
            m[size_t(k)] += (double(wq[size_t(k * cols + c)]) + shift * S) * v[size_t(c)];
        rotate_ref(*w.U, m.data(), transpose_u);
        return m;
      };
      int outside[3] = {0, 0, 0}, tokens[3] = {0, 0, 0};
      for (int64_t t = 0; t < n; ++t) {
        const int before[3] = {outside[0], outside[1], outside[2]};
        const std::vector<double> right = product(t, true, 0, true);
        const std::vector<double> wrong[3] = {product(t, true, 1, true),    // −½·Σv became +½·Σv
                                              product(t, true, 0, false),   // U for Uᵀ
                                              product(t, false, 0, true)};  // x·d for x ⊘ d
        for (int64_t r = 0; r < rows; ++r) {
          const size_t i = size_t(t * rows + r);
          EXPECT_LE(std::fabs(right[size_t(r)] - o.y[i]), tol * o.mag[i]);  // the construction is right
          for (int j = 0; j < 3; ++j) outside[j] += std::fabs(wrong[j][size_t(r)] - o.y[i]) > tol * o.mag[i];
        }
        for (int j = 0; j < 3; ++j) tokens[j] += outside[j] > before[j];
      }
      for (int j = 0; j < 3; ++j) EXPECT_EQ(tokens[j], n) << j;
      EXPECT_GT(outside[1], n * rows / 2);
      EXPECT_GT(outside[2], n * rows / 2);
      std::printf(
          "  %s %d-bit: worst |error|/M %.3g (tolerance %.3g); wrong answers outside: %d, %d, %d of %d\n",
          std::string(rotation_kind_name(kind)).c_str(), bits, worst, tol, outside[0], outside[1], outside[2],
          int(n * rows));
    }
}

TEST(QuipMatmul, DequantizeRowsMatchesTheReferenceWithinDerivedBoundOnEveryTarget) {
  std::mt19937 rng(53);
  for (const Shape& s : kShapes)
    for (RotationKind kind : {RotationKind::Kronecker, RotationKind::Hadamard})
      for (int bits : {2, 3, 4}) {
        SCOPED_TRACE(::testing::Message()
                     << rotation_kind_name(kind) << " " << s.rows << "x" << s.cols << " bits=" << bits);
        const test::RandomQuip p = test::random_quip(bits, s.rows, s.cols, kind, rng);
        const QuipWeight& w = *p.w;
        // A row range (all rows of the small shapes; some in the middle of the large one).
        const int64_t r0 = s.rows > 512 ? 301 : 0, nr = s.rows > 512 ? 37 : s.rows;
        const int64_t rows = s.rows, cols = s.cols;
        std::vector<float> ref(size_t(nr * cols));
        quip_dequantize_rows_ref(w, r0, nr, ref.data());
        std::vector<float> wq(size_t(rows * cols));
        quip_rotated_rows(w, 0, rows, wq.data());
        std::vector<double> mag(static_cast<size_t>(nr * cols)), ucol(static_cast<size_t>(rows));
        for (int64_t i = 0; i < nr; ++i) {  // (|U|ᵀ·|Ŵ′|·|V|)_rc / d_c, row r = r0 + i
          std::fill(ucol.begin(), ucol.end(), 0.0);
          ucol[size_t(r0 + i)] = 1;
          test::abs_rotate(*w.U, ucol.data(), false);  // column r of |U|
          double* m = mag.data() + i * cols;
          for (int64_t k = 0; k < rows; ++k)
            for (int64_t c = 0; c < cols; ++c)
              m[c] += ucol[size_t(k)] * std::fabs(double(wq[size_t(k * cols + c)]));
          test::abs_rotate(*w.V, m, true);
          for (int64_t c = 0; c < cols; ++c) m[c] /= double(w.d[c]);
        }
        const double tol = gamma32(rows + rotation_roundings(*w.U) + rotation_roundings(*w.V) + 2) + 1e-12;
        test::for_each_simd_target([&] {
          std::vector<float> out(ref.size(), NAN);
          quip_dequantize_rows(w, r0, nr, out.data());
          for (size_t i = 0; i < out.size(); ++i)
            ASSERT_LE(std::fabs(double(out[i]) - double(ref[i])), tol * mag[i]) << i;
          std::vector<float> tab(ref.size(), NAN);
          format_kernels(quip_format()).dequantize_rows(w, r0, nr, tab.data());
          EXPECT_EQ(std::memcmp(tab.data(), out.data(), out.size() * 4), 0);  // the table's entry is that one
        });
      }
}

// The format table's reference dequantizer is quip_dequantize_rows_ref.
TEST(QuipMatmul, FormatTableEntriesAreTheQuipFunctions) {
  std::mt19937 rng(54);
  const test::RandomQuip p = test::random_quip(3, 24, 40, RotationKind::Hadamard, rng);
  std::vector<float> a(24 * 40), b(24 * 40);
  quip_format().dequantize_ref(*p.w, 0, 24, a.data());
  quip_dequantize_rows_ref(*p.w, 0, 24, b.data());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
  EXPECT_EQ(quip_format().bits_per_weight(*p.w), p.w->bits_per_weight());
}

}  // namespace
}  // namespace lowbit
