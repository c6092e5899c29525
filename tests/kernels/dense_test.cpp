// SIMD and BLAS dense kernels vs their scalar twins and a double-precision oracle.
//
// Tolerance: a float dot product of n terms, in any summation order, differs from the exact value by at most
// γ_n·Σ|w_i·x_i| with γ_n = n·u/(1 - n·u), u = 2⁻²⁴ (Higham, Accuracy and Stability, §3.1). Widening f16/bf16
// to f32 is exact, so the oracle is the double-precision sum over the widened weights.
#include "kernels/dense.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "test_util.h"

namespace lowbit {
namespace {

struct Case {
  DType dtype;
  std::vector<uint16_t> h;  // f16/bf16 storage
  std::vector<float> f;     // f32 storage or widened values
  const void* data() const { return dtype == DType::F32 ? static_cast<const void*>(f.data()) : h.data(); }
};

Case make_weights(DType t, size_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0, 1);
  Case c{t, {}, {}};
  c.f.resize(n);
  if (t != DType::F32) c.h.resize(n);
  for (size_t i = 0; i < n; ++i) {
    float v = nd(rng);
    if (t == DType::BF16) c.h[i] = f32_to_bf16(v), v = bf16_to_f32(c.h[i]);
    if (t == DType::F16) c.h[i] = f32_to_f16(v), v = f16_to_f32(c.h[i]);
    c.f[i] = v;
  }
  return c;
}

double gamma(size_t n) {
  const double u = std::ldexp(1.0, -24);
  return double(n) * u / (1 - double(n) * u);
}

class DenseKernel : public ::testing::TestWithParam<DType> {};

TEST_P(DenseKernel, DotMatchesOracleAtRaggedLengths) {
  test::for_each_simd_target([&] {
    std::mt19937 rng(7);
    for (size_t n : {0u, 1u, 3u, 7u, 8u, 15u, 16u, 17u, 31u, 64u, 65u, 255u, 384u, 1000u, 4099u}) {
      Case w = make_weights(GetParam(), n, rng);
      Case x = make_weights(DType::F32, n, rng);
      double exact = 0, mag = 0;
      for (size_t i = 0; i < n; ++i)
        exact += double(w.f[i]) * x.f[i], mag += std::fabs(double(w.f[i]) * x.f[i]);
      const double tol = gamma(n) * mag;
      EXPECT_NEAR(dot_row(w.dtype, w.data(), x.f.data(), n), exact, tol) << "n=" << n;
      EXPECT_NEAR(dot_row_scalar(w.dtype, w.data(), x.f.data(), n), exact, tol) << "n=" << n;
    }
  });
}

TEST_P(DenseKernel, WidenIsExact) {
  test::for_each_simd_target([&] {
    std::mt19937 rng(3);
    Case w = make_weights(GetParam(), 1037, rng);
    std::vector<float> out(1037);
    widen_to_f32(w.dtype, w.data(), out.data(), out.size());
    EXPECT_EQ(out, w.f);
  });
}

TEST_P(DenseKernel, MatmulGemvAndGemmPathsMatchScalar) {
  test::for_each_simd_target([&] {
    std::mt19937 rng(11);
    const int64_t rows = 67, cols = 133;  // ragged on purpose
    Case w = make_weights(GetParam(), size_t(rows * cols), rng);
    DenseWeight dw{w.dtype, w.data(), rows, cols};
    for (int64_t n : {1, 3, 5, 37}) {  // 1, 3: GEMV path; 5, 37: widen + sgemm path
      Case x = make_weights(DType::F32, size_t(n * cols), rng);
      std::vector<float> y(size_t(n * rows)), ys(size_t(n * rows));
      dense_matmul(dw, x.f.data(), n, y.data());
      dense_matmul_scalar(dw, x.f.data(), n, ys.data());
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < rows; ++r) {
          double mag = 0;
          for (int64_t i = 0; i < cols; ++i)
            mag += std::fabs(double(w.f[size_t(r * cols + i)]) * x.f[size_t(t * cols + i)]);
          // both differ from exact by at most γ·mag, so from each other by at most 2γ·mag
          ASSERT_NEAR(y[size_t(t * rows + r)], ys[size_t(t * rows + r)], 2 * gamma(size_t(cols)) * mag)
              << "n=" << n << " t=" << t << " r=" << r;
        }
    }
  });
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, DenseKernel, ::testing::Values(DType::F32, DType::F16, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(DenseKernel, ReportsTarget) {
  EXPECT_STRNE(simd_target_name(), "");
}

}  // namespace
}  // namespace lowbit
