// SIMD softmax vs its scalar twin. hn::Exp and std::exp are each within a few ulp of exp, and the sums differ
// by at most γ_n relative (Higham §3.1), so each probability agrees to (8 + 2n)·2⁻²⁴ relative.
#include "kernels/softmax.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace lowbit {

TEST(Softmax, SimdMatchesScalarAtRaggedLengths) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0, 4);
  for (size_t n : {1u, 2u, 7u, 15u, 16u, 17u, 64u, 100u, 1000u, 2048u}) {
    std::vector<float> a(n);
    for (auto& v : a) v = nd(rng);
    a[n / 2] = 30;  // a dominant entry
    std::vector<float> b = a;
    softmax_inplace(a.data(), n);
    softmax_inplace_scalar(b.data(), n);
    const double tol = (8.0 + 2.0 * double(n)) * std::ldexp(1.0, -24);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      ASSERT_NEAR(a[i], b[i], tol * b[i] + 1e-30) << "n=" << n << " i=" << i;
      sum += a[i];
    }
    EXPECT_NEAR(sum, 1.0, tol);
  }
}

}  // namespace lowbit
