// SIMD softmax and SwiGLU gate vs their scalar twins. Softmax: hn::Exp and std::exp are each within a few ulp
// of exp, and the sums differ by at most γ_n relative (Higham §3.1), so each probability agrees to (8 +
// 2n)·2⁻²⁴ relative.
#include "kernels/softmax.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "test_util.h"

namespace lowbit {

TEST(Softmax, SimdMatchesScalarAtRaggedLengths) {
  test::for_each_simd_target([&] {
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
  });
}

// silu(g)·u = g / (1 + exp(-g)) · u: each side's exp is within 4 ulp, and the add, divide and multiply add
// half an ulp each, so the two agree to 2·(4 + 1.5)·2⁻²⁴ relative; 16·2⁻²⁴ leaves room. Includes gates whose
// exp(-g) overflows (g < -88: silu -> -0) or underflows.
TEST(SiluMul, SimdMatchesScalarAtRaggedLengths) {
  test::for_each_simd_target([&] {
    std::mt19937 rng(6);
    std::normal_distribution<float> nd(0, 6);
    for (size_t n : {1u, 3u, 15u, 16u, 17u, 100u, 1024u, 1031u}) {
      std::vector<float> g(n), u(n);
      for (size_t i = 0; i < n; ++i) {
        g[i] = nd(rng);
        u[i] = nd(rng);
      }
      g[0] = -100.0f;
      g[n - 1] = 95.0f;
      std::vector<float> a = g, b = g;
      silu_mul(a.data(), u.data(), n);
      silu_mul_scalar(b.data(), u.data(), n);
      const double tol = 16.0 * std::ldexp(1.0, -24);
      for (size_t i = 0; i < n; ++i) {
        ASSERT_NEAR(a[i], b[i], tol * std::fabs(b[i]) + 1e-37) << "n=" << n << " i=" << i;
        // And against the definition in double.
        const double want = double(g[i]) / (1.0 + std::exp(-double(g[i]))) * double(u[i]);
        ASSERT_NEAR(a[i], want, tol * std::fabs(want) + 1e-37) << "n=" << n << " i=" << i;
      }
    }
  });
}

}  // namespace lowbit
