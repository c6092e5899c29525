// Hadamard transforms (formats/hadamard.h): the Paley tables are Hadamard matrices, the length
// factorisation, and the f32 reference against the dense product (1/√n)·(H_{2^k} ⊗ H_m)·x in double, both
// directions, with the transpose undoing the transform.
//
// Tolerance. Every entry of H_n is ±1/√n, so each output is y_i = s·Σ_j ±x_j with s = 1/√n. The reference
// adds each x_j into y_i through k butterfly additions and m additions of the dense product (k = log2(n/m);
// the ±1 products are exact), then rounds s to f32 and multiplies once: |ŷ_i − y_i| ≤ γ_K·s·Σ_j |x_j| with
// K = k + m + 2 and γ_K = K·u/(1 − K·u), u = 2⁻²⁴ (Higham, Accuracy and Stability, §3.1: a sum whose terms
// each pass through at most K rounded additions, and two more relative errors of u for the scale). The double
// reference errs by ≈ n·2⁻⁵³ of the same magnitude: a slack of 1e-12·s·Σ|x|. The round trip H_nᵀ(H_n x)
// adds the two directions' errors: each is ≤ γ_K·Σ|x| after the other, orthogonal, transform (Σ_j |e_j| ≤
// n·max|e| and the second transform multiplies by s again), so |x̂ − x| ≤ 2.01·γ_K·Σ|x|.
#include "formats/hadamard.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "test_util.h"

namespace lowbit {
namespace {

double gamma(int64_t k) {
  const double u = std::ldexp(1.0, -24);
  return double(k) * u / (1 - double(k) * u);
}

int64_t log2_exact(int64_t p) {
  return std::countr_zero(uint64_t(p));
}

std::vector<float> random_vector(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = nd(rng);
  return x;
}

TEST(Hadamard, PaleyTablesAreHadamardMatrices) {
  for (int m : {1, 12, 20, 28}) {
    SCOPED_TRACE(m);
    const int8_t* H = hadamard_matrix(m);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) {
        ASSERT_TRUE(H[r * m + c] == 1 || H[r * m + c] == -1);
        int dot = 0;
        for (int j = 0; j < m; ++j) dot += H[r * m + j] * H[c * m + j];
        ASSERT_EQ(dot, r == c ? m : 0) << r << "," << c;  // H·Hᵀ = m·I
      }
    EXPECT_EQ(hadamard_matrix(m), H);  // built once
  }
  // Paley I's tables are not symmetric (so the transform's transpose is another matrix), Paley II's is.
  auto symmetric = [](int m) {
    const int8_t* H = hadamard_matrix(m);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c)
        if (H[r * m + c] != H[c * m + r]) return false;
    return true;
  };
  EXPECT_FALSE(symmetric(12));
  EXPECT_FALSE(symmetric(20));
  EXPECT_TRUE(symmetric(28));
  EXPECT_EQ(test::error_of([] { hadamard_matrix(16); }),
            "hadamard_matrix: no 16x16 table (have 1, 12, 20, 28)");
  EXPECT_THROW(hadamard_matrix(2), Error);
}

TEST(Hadamard, BaseFactorsTheLength) {
  const std::pair<int64_t, int64_t> cases[] = {
      {1, 1},   {2, 1},    {4, 1},   {1024, 1},   {384, 12},  {12, 12},   {24, 12},
      {20, 20}, {640, 20}, {28, 28}, {14336, 28}, {11008, 0}, {1000, 0},  {6, 0},
      {3, 0},   {10, 0},   {36, 0},  {44, 0},     {4096, 1},  {3584, 28}, {5120, 20}};
  for (auto [n, m] : cases) EXPECT_EQ(hadamard_base(n), m) << n;
  EXPECT_EQ(test::error_of([] { hadamard_base(0); }), "hadamard_base: length 0 (must be >= 1)");
  std::vector<float> x(1000);
  EXPECT_EQ(test::error_of([&] { hadamard_ref(x.data(), 1000, false); }),
            "hadamard: length 1000 is not 2^k, 12·2^k, 20·2^k or 28·2^k");
}

// (1/√n)·(H_{2^k} ⊗ H_m)·x (or with H_mᵀ) in double, entry by entry from the definition.
std::vector<double> dense_product(const std::vector<float>& x, int64_t n, bool transpose) {
  const int64_t m = hadamard_base(n), p = n / m;
  const int8_t* H = hadamard_matrix(int(m));
  std::vector<double> y(static_cast<size_t>(n));
  for (int64_t a = 0; a < p; ++a)
    for (int64_t b = 0; b < m; ++b) {
      double s = 0;
      for (int64_t a2 = 0; a2 < p; ++a2)
        for (int64_t b2 = 0; b2 < m; ++b2) {
          const int hs = std::popcount(uint64_t(a & a2)) % 2 ? -1 : 1;
          const int hm = transpose ? H[b2 * m + b] : H[b * m + b2];
          s += double(hs * hm) * double(x[size_t(a2 * m + b2)]);
        }
      y[size_t(a * m + b)] = s / std::sqrt(double(n));
    }
  return y;
}

TEST(Hadamard, ReferenceIsTheDenseKroneckerProduct) {
  std::mt19937 rng(21);
  for (int64_t n : {1, 2, 4, 8, 12, 16, 20, 24, 28, 56, 80, 384, 640, 1024, 1792}) {
    const int64_t m = hadamard_base(n);
    const int64_t K = log2_exact(n / m) + (m > 1 ? m : 0) + 2;
    for (bool transpose : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " transpose=" << transpose);
      const std::vector<float> x = random_vector(n, rng);
      double l1 = 0;
      for (float v : x) l1 += std::fabs(double(v));
      const double tol = (gamma(K) + 1e-12) * l1 / std::sqrt(double(n));
      const std::vector<double> want = dense_product(x, n, transpose);
      std::vector<float> y = x;
      hadamard_ref(y.data(), n, transpose);
      for (int64_t i = 0; i < n; ++i) ASSERT_LE(std::fabs(double(y[size_t(i)]) - want[size_t(i)]), tol) << i;
    }
  }
}

TEST(Hadamard, TransposeIsTheInverse) {
  std::mt19937 rng(22);
  for (int64_t n : {1, 2, 12, 16, 20, 28, 384, 640, 1024, 14336}) {
    const int64_t m = hadamard_base(n);
    const int64_t K = log2_exact(n / m) + (m > 1 ? m : 0) + 2;
    for (bool transpose_first : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " transpose first=" << transpose_first);
      const std::vector<float> x = random_vector(n, rng);
      double l1 = 0;
      for (float v : x) l1 += std::fabs(double(v));
      std::vector<float> y = x;
      hadamard_ref(y.data(), n, transpose_first);
      hadamard_ref(y.data(), n, !transpose_first);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_LE(std::fabs(double(y[size_t(i)]) - double(x[size_t(i)])), 2.01 * gamma(K) * l1) << i;
    }
  }
}

// Small integers keep every sum exact, so with n a power of 4 (s = 2^−j exact) the transform is exact: the
// Sylvester part alone, and H_12's first row (all ones) on e_0 ⊗ anything.
TEST(Hadamard, ExactOnSmallIntegers) {
  std::vector<float> x = {1, 2, 3, 4};
  hadamard_ref(x.data(), 4, false);
  EXPECT_EQ(x, (std::vector<float>{5, -1, -2, 0}));  // (1/2)·(10, −2, −4, 0)
  // 48 = 4·12: H_48ᵀ·e_0 is row 0 of H_48, (H_4 row 0) ⊗ (H_12 row 0) = all ones (Paley I's first row),
  // times s: every partial sum is 0 or 1, so the only rounding is s's own.
  std::vector<float> e(48, 0.0f);
  e[0] = 1;
  hadamard_ref(e.data(), 48, true);
  const float s = float(1.0 / std::sqrt(48.0));
  for (int64_t i = 0; i < 48; ++i) EXPECT_EQ(e[size_t(i)], float(hadamard_matrix(12)[i % 12]) * s) << i;
}

}  // namespace
}  // namespace lowbit
