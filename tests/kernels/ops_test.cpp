// kernels/ops.h against its scalar twins (gemm, syrk in double: the bound is the float rounding of a k-term
// sum, γ_k Σ|a·b|), and the activation hook: input transforms alone, and applied by ops::linear.
#include "kernels/ops.h"

#include <cblas.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "core/sys.h"
#include "kernels/input_transform.h"

namespace lowbit {
namespace {

std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

// γ_k = k·u / (1 − k·u), u = 2⁻²⁴: the classic bound on a float dot product's rounding, relative to Σ|a·b|.
double gamma(int64_t k) {
  const double u = std::ldexp(1.0, -24);
  return double(k + 2) * u / (1 - double(k + 2) * u);
}

TEST(Ops, GemmMatchesScalarTwinBothLayouts) {
  const int64_t m = 7, n = 33, k = 129;
  for (bool tb : {false, true}) {
    const std::vector<float> A = randn(size_t(m * k), 1), B = randn(size_t(k * n), 2),
                             C0 = randn(size_t(m * n), 3);
    std::vector<float> got = C0, want = C0;
    const int64_t ldb = tb ? k : n;
    ops::gemm(tb, m, n, k, 0.5f, A.data(), k, B.data(), ldb, 2.0f, got.data(), n);
    ops::gemm_scalar(tb, m, n, k, 0.5f, A.data(), k, B.data(), ldb, 2.0f, want.data(), n);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double mag = 2 * std::fabs(C0[size_t(i * n + j)]);
        for (int64_t p = 0; p < k; ++p)
          mag += 0.5 * std::fabs(A[size_t(i * k + p)] * (tb ? B[size_t(j * k + p)] : B[size_t(p * n + j)]));
        EXPECT_NEAR(got[size_t(i * n + j)], want[size_t(i * n + j)], gamma(k) * mag)
            << tb << " " << i << " " << j;
      }
  }
}

// With several threads ops::gemm splits C into tiles, each a single-threaded sgemm (issue 30). Every element
// must come out exactly as one multi-threaded OpenBLAS call computes it: the same K blocking and
// micro-kernel, no tile small enough for OpenBLAS's unblocked small-matrix kernels. Shapes: testbed-25m's and
// the 1B's linears at 2048 and 512 tokens, odd sizes (tails), and sizes near the tiling's limits.
TEST(Ops, TiledGemmEqualsOneOpenBlasCallBitwise) {
  struct Shape {
    int64_t m, n, k;
  };
  const Shape shapes[] = {{2048, 384, 384},  {2048, 1024, 384}, {2048, 384, 1024}, {256, 32000, 384},
                          {512, 2048, 2048}, {64, 8192, 2048},  {64, 2048, 8192},  {1000, 777, 513},
                          {130, 4100, 300},  {67, 129, 2049},   {4096, 64, 64},    {5, 2048, 2048},
                          {256, 256, 64},    {256, 64, 256},    {256, 768, 64},    {256, 64, 768},
                          {200, 300, 128}};
  const int saved = num_threads();
  set_num_threads(2);
  for (const Shape& s : shapes)
    for (int variant = 0; variant < 3; ++variant) {  // A·Bᵀ, A·B, Aᵀ·B
      const bool ta = variant == 2, tb = variant == 0;
      const std::vector<float> A = randn(size_t(s.m * s.k), 11), B = randn(size_t(s.k * s.n), 12),
                               C0 = randn(size_t(s.m * s.n), 13);
      const int64_t lda = ta ? s.m : s.k, ldb = tb ? s.k : s.n;
      for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, {1.0f, 1.0f}, {0.125f, 0.0f}}) {
        std::vector<float> got = C0, want = C0;
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(s.m),
                    int(s.n), int(s.k), alpha, A.data(), int(lda), B.data(), int(ldb), beta, want.data(),
                    int(s.n));
        for (bool contended : {false, true}) {  // tiles on threads, or the one-thread call (core/parallel.h)
          set_contended_for_testing(contended);
          got = C0;
          if (ta)
            ops::gemm_at(s.m, s.n, s.k, alpha, A.data(), lda, B.data(), ldb, beta, got.data(), s.n);
          else
            ops::gemm(tb, s.m, s.n, s.k, alpha, A.data(), lda, B.data(), ldb, beta, got.data(), s.n);
          size_t diff = 0;
          for (size_t i = 0; i < got.size(); ++i) diff += got[i] != want[i];
          EXPECT_EQ(diff, 0u) << s.m << "x" << s.n << "x" << s.k << " variant " << variant << " alpha "
                              << alpha << " beta " << beta << " contended " << contended;
        }
        set_contended_for_testing(false);
      }
    }
  set_num_threads(saved);
}

// syrk_upper is tiled the same way (the GPTQ Hessian): bitwise one OpenBLAS ssyrk call, lower triangle kept.
TEST(Ops, TiledSyrkEqualsOneOpenBlasCallBitwise) {
  const int saved = num_threads();
  set_num_threads(2);
  for (auto [n, k] :
       {std::pair<int64_t, int64_t>{384, 2048}, {1024, 2048}, {2048, 512}, {1000, 1024}, {300, 777}})
    for (float alpha : {1.0f, 0.37f}) {
      const std::vector<float> A = randn(size_t(k * n), 21), C0 = randn(size_t(n * n), 22);
      std::vector<float> got = C0, want = C0;
      cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, int(n), int(k), alpha, A.data(), int(n), 1.0f,
                  want.data(), int(n));
      for (bool contended : {false, true}) {
        set_contended_for_testing(contended);
        got = C0;
        ops::syrk_upper(n, k, alpha, A.data(), n, 1.0f, got.data(), n);
        size_t diff = 0;
        for (size_t i = 0; i < got.size(); ++i) diff += got[i] != want[i];
        EXPECT_EQ(diff, 0u) << n << "x" << k << " alpha " << alpha << " contended " << contended;
      }
      set_contended_for_testing(false);
    }
  set_num_threads(saved);
}

TEST(Ops, SyrkUpperMatchesScalarTwinAndLeavesTheLowerTriangle) {
  const int64_t n = 24, k = 300;
  const std::vector<float> A = randn(size_t(k * n), 4);
  std::vector<float> got(size_t(n * n), 7.0f), want(size_t(n * n), 7.0f);
  ops::syrk_upper(n, k, 1.0f, A.data(), n, 1.0f, got.data(), n);
  ops::syrk_upper_scalar(n, k, 1.0f, A.data(), n, 1.0f, want.data(), n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      if (j < i) {
        EXPECT_EQ(got[size_t(i * n + j)], 7.0f);
        continue;
      }
      double mag = 7;
      for (int64_t p = 0; p < k; ++p) mag += std::fabs(A[size_t(p * n + i)] * A[size_t(p * n + j)]);
      EXPECT_NEAR(got[size_t(i * n + j)], want[size_t(i * n + j)], gamma(k) * mag);
    }
}

// SmoothQuant's fake_quant.py quantize_activation_per_token_absmax on inputs chosen so every step is exact in
// float: max |x| = 127/64 makes Δ = 1/64 at 8 bits, and x/Δ lands on integers and halves (ties to even).
TEST(InputTransform, PerTokenQuantIsUpstreamAbsmaxRounding) {
  const std::vector<float> x = {127.0f / 64,
                                2.5f / 64,
                                -3.5f / 64,
                                0.25f / 64,
                                -127.0f / 64,
                                1.5f / 64,  // row 0
                                0,
                                0,
                                0,
                                0,
                                0,
                                0};  // row 1
  std::vector<float> y(x.size());
  PerTokenQuant(8).apply(x.data(), 2, 6, y.data());
  const std::vector<float> want = {127.0f / 64,
                                   2.0f / 64,
                                   -4.0f / 64,
                                   0,
                                   -127.0f / 64,
                                   2.0f / 64,  // half to even
                                   0,
                                   0,
                                   0,
                                   0,
                                   0,
                                   0};  // an all-zero row: Δ = 1e-5 / 127, still exactly 0
  EXPECT_EQ(y, want);
  // 4 bits: Δ = max/7; every output is an integer multiple of Δ within half a step of x.
  const std::vector<float> r = randn(64, 5);
  std::vector<float> q(r.size());
  PerTokenQuant(4).apply(r.data(), 2, 32, q.data());
  for (int t = 0; t < 2; ++t) {
    float m = 0;
    for (int j = 0; j < 32; ++j) m = std::max(m, std::fabs(r[size_t(t * 32 + j)]));
    const float delta = m / 7;
    for (int j = 0; j < 32; ++j) {
      const float v = q[size_t(t * 32 + j)], steps = v / delta;
      EXPECT_NEAR(steps, std::nearbyint(steps), 1e-4);
      EXPECT_LE(std::fabs(steps), 7.0f + 1e-4f);
      EXPECT_LE(std::fabs(v - r[size_t(t * 32 + j)]), 0.5f * delta * (1 + 1e-5f));
    }
  }
  EXPECT_THROW(PerTokenQuant(1), Error);
  EXPECT_EQ(PerTokenQuant(6).name(), "per_token_a6");
}

// The hook through ops::linear: x · diag(1/s) · (W · diag(s))ᵀ is x · Wᵀ (SmoothQuant's identity), up to the
// rounding of the scaling; and a chain applies its steps in order.
TEST(InputTransform, OpsLinearAppliesTheHook) {
  const int64_t rows = 16, cols = 40, n = 5;
  const std::vector<float> W = randn(size_t(rows * cols), 6), x = randn(size_t(n * cols), 7);
  std::vector<float> s(static_cast<size_t>(cols)), Ws(W.size());
  for (int64_t j = 0; j < cols; ++j) s[size_t(j)] = std::ldexp(1.0f, int(j % 7) - 3);  // powers of 2: exact
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) Ws[size_t(r * cols + j)] = W[size_t(r * cols + j)] * s[size_t(j)];
  Linear plain = owned_f32_linear(W, rows, cols), smoothed = owned_f32_linear(Ws, rows, cols);
  smoothed.input = std::make_shared<ChannelScale>(s);
  std::vector<float> y0(size_t(n * rows)), y1(y0.size());
  ops::linear(plain, x.data(), n, y0.data());
  ops::linear(smoothed, x.data(), n, y1.data());
  EXPECT_EQ(y0, y1);  // power-of-2 scales round nothing

  // Smoothing then 8-bit per-token quantization equals quantizing the smoothed input by hand.
  smoothed.input = std::make_shared<TransformChain>(std::vector<std::shared_ptr<const InputTransform>>{
      std::make_shared<ChannelScale>(s), std::make_shared<PerTokenQuant>(8)});
  EXPECT_EQ(smoothed.input->name(), "channel_scale+per_token_a8");
  std::vector<float> xs(x.size()), xq(x.size()), want(y0.size());
  ChannelScale(s).apply(x.data(), n, cols, xs.data());
  PerTokenQuant(8).apply(xs.data(), n, cols, xq.data());
  ops::linear(owned_f32_linear(Ws, rows, cols), xq.data(), n, want.data());
  ops::linear(smoothed, x.data(), n, y1.data());
  EXPECT_EQ(y1, want);
  EXPECT_THROW(ChannelScale({1.0f, 0.0f}), Error);
}

}  // namespace
}  // namespace lowbit
