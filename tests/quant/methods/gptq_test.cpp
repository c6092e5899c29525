// GPTQ on synthetic layers: better than RTN on the layer-output objective, equal to an unblocked
// column-by-column reference (double-precision inverse Hessian), valid act-order g_idx, dead columns, static
// groups, and the non-positive-definite fallback.
#include "quant/methods/gptq.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "core/error.h"
#include "kernels/affine_matmul.h"
#include "quant/methods/rtn.h"
#include "quant/synth.h"

namespace lowbit {
namespace {

struct Problem {
  int64_t rows, cols, n;
  std::vector<float> W, X, H;  // W (rows, cols), X (n, cols), H = 2XᵀX/n (cols, cols)
};

// Correlated inputs with uneven channel magnitudes, as real activations have.
Problem make_problem(int64_t rows, int64_t cols, int64_t n, uint32_t seed) {
  Problem p{rows, cols, n, test::randn(size_t(rows * cols), seed, 0.05f), {}, {}};
  const std::vector<float> G = test::randn(size_t(n * cols), seed + 1);
  const std::vector<float> M = test::randn(size_t(cols * cols), seed + 2, 0.5f / std::sqrt(float(cols)));
  const std::vector<float> mag = test::randn(size_t(cols), seed + 3, 0.7f);
  p.X.assign(size_t(n * cols), 0.0f);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < cols; ++j) {
      double s = G[size_t(t * cols + j)];
      for (int64_t k = 0; k < cols; k += 7) s += G[size_t(t * cols + k)] * M[size_t(k * cols + j)];
      p.X[size_t(t * cols + j)] = float(s * std::exp(mag[size_t(j)]));
    }
  p.H.assign(size_t(cols * cols), 0.0f);
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double s = 0;
      for (int64_t t = 0; t < n; ++t) s += double(p.X[size_t(t * cols + i)]) * p.X[size_t(t * cols + j)];
      p.H[size_t(i * cols + j)] = float(2 * s / double(n));
    }
  return p;
}

std::vector<float> dequant(const AffineWeight& q) {
  std::vector<float> out(size_t(q.rows * q.cols));
  affine_dequantize_rows_scalar(q, 0, q.rows, out.data());
  return out;
}

// ‖(W − Ŵ) Xᵀ‖²_F
double output_error(const Problem& p, const std::vector<float>& What) {
  double e = 0;
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t t = 0; t < p.n; ++t) {
      double s = 0;
      for (int64_t c = 0; c < p.cols; ++c)
        s += (double(p.W[size_t(r * p.cols + c)]) - What[size_t(r * p.cols + c)]) *
             p.X[size_t(t * p.cols + c)];
      e += s * s;
    }
  return e;
}

// The unblocked algorithm: for each column in order, quantize, then W[:, j] −= err · U[i, j] for every later
// j, with U the upper Cholesky factor of (H + λI)⁻¹ computed in double.
struct Ref {
  std::vector<float> What;
  std::vector<int64_t> perm;
};
Ref reference_gptq(const Problem& p, const GptqOptions& o) {
  const int64_t rows = p.rows, n = p.cols;
  const int maxq = o.spec.maxq();
  const int64_t gs = o.group_size > 0 ? o.group_size : n;
  std::vector<float> W = p.W;
  std::vector<double> H(p.H.begin(), p.H.end());
  std::vector<AffineParams> params(static_cast<size_t>(rows));
  if (o.group_size == kPerChannel)
    for (int64_t r = 0; r < rows; ++r) params[size_t(r)] = find_params(&W[size_t(r * n)], n, o.spec);
  for (int64_t i = 0; i < n; ++i)
    if (H[size_t(i * n + i)] == 0) {
      H[size_t(i * n + i)] = 1;
      for (int64_t r = 0; r < rows; ++r) W[size_t(r * n + i)] = 0;
    }
  std::vector<AffineParams> stat;
  if (o.static_groups && o.group_size > 0)
    for (int64_t g = 0; g < n / gs; ++g)
      for (int64_t r = 0; r < rows; ++r) stat.push_back(find_params(&W[size_t(r * n + g * gs)], gs, o.spec));
  Ref ref;
  ref.perm.resize(size_t(n));
  std::iota(ref.perm.begin(), ref.perm.end(), 0);
  if (o.act_order)
    std::stable_sort(ref.perm.begin(), ref.perm.end(),
                     [&](int64_t a, int64_t b) { return H[size_t(a * n + a)] > H[size_t(b * n + b)]; });
  const auto& P = ref.perm;
  // Permuted, damped H, then A = H⁻¹ by solving with its Cholesky factor.
  std::vector<double> A(size_t(n * n)), L(size_t(n * n), 0.0), Inv(size_t(n * n), 0.0);
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += H[size_t(i * n + i)] / double(n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      A[size_t(i * n + j)] =
          H[size_t(P[size_t(i)] * n + P[size_t(j)])] + (i == j ? o.damp * float(mean) : 0.0);
  auto cholesky = [&](const std::vector<double>& M, std::vector<double>& Lo) {
    for (int64_t j = 0; j < n; ++j) {
      double d = M[size_t(j * n + j)];
      for (int64_t k = 0; k < j; ++k) d -= Lo[size_t(j * n + k)] * Lo[size_t(j * n + k)];
      Lo[size_t(j * n + j)] = std::sqrt(d);
      for (int64_t i = j + 1; i < n; ++i) {
        double s = M[size_t(i * n + j)];
        for (int64_t k = 0; k < j; ++k) s -= Lo[size_t(i * n + k)] * Lo[size_t(j * n + k)];
        Lo[size_t(i * n + j)] = s / Lo[size_t(j * n + j)];
      }
    }
  };
  cholesky(A, L);
  for (int64_t c = 0; c < n; ++c) {  // column c of H⁻¹: L y = e_c, Lᵀ x = y
    std::vector<double> y(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      double s = i == c ? 1 : 0;
      for (int64_t k = 0; k < i; ++k) s -= L[size_t(i * n + k)] * y[size_t(k)];
      y[size_t(i)] = s / L[size_t(i * n + i)];
    }
    for (int64_t i = n - 1; i >= 0; --i) {
      double s = y[size_t(i)];
      for (int64_t k = i + 1; k < n; ++k) s -= L[size_t(k * n + i)] * Inv[size_t(k * n + c)];
      Inv[size_t(i * n + c)] = s / L[size_t(i * n + i)];
    }
  }
  std::vector<double> L2(size_t(n * n), 0.0);
  cholesky(Inv, L2);  // H⁻¹ = L2 L2ᵀ, U = L2ᵀ
  auto U = [&](int64_t i, int64_t j) { return float(L2[size_t(j * n + i)]); };

  std::vector<float> Wp(W.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) Wp[size_t(r * n + j)] = W[size_t(r * n + P[size_t(j)])];
  ref.What.assign(W.size(), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      if (o.group_size > 0) {
        if (o.static_groups)
          params[size_t(r)] = stat[size_t((P[size_t(i)] / gs) * rows + r)];
        else if (i % gs == 0)
          params[size_t(r)] = find_params(&Wp[size_t(r * n + i)], gs, o.spec);
      }
      const float w = Wp[size_t(r * n + i)];
      const float q = fake_quantize_value(w, params[size_t(r)], maxq);
      ref.What[size_t(r * n + P[size_t(i)])] = q;
      const float err = (w - q) / U(i, i);
      for (int64_t j = i + 1; j < n; ++j) Wp[size_t(r * n + j)] -= err * U(i, j);
    }
  return ref;
}

GptqOptions options(int bits, int64_t group, bool act_order = false, bool static_groups = false,
                    int block = 128) {
  GptqOptions o;
  o.spec.bits = bits;
  o.group_size = group;
  o.act_order = act_order;
  o.static_groups = static_groups;
  o.block_size = block;
  return o;
}

TEST(Gptq, BeatsRtnOnTheLayerOutput) {
  const Problem p = make_problem(48, 256, 512, 11);
  for (auto [bits, group, act] : {std::tuple{4, kPerChannel, false},
                                  {4, 64, false},
                                  {3, 64, false},
                                  {3, 64, true},
                                  {2, 64, false},
                                  {8, kPerChannel, false}}) {
    GptqResult g = gptq_quantize(p.W.data(), p.rows, p.cols, p.H, options(bits, group, act), "w");
    QuantSpec s;
    s.bits = bits;
    auto rtn = quantize_rtn(p.W.data(), p.rows, p.cols, s,
                            group > 0 ? Granularity::Group : Granularity::Channel, group);
    const double eg = output_error(p, dequant(*g.weight)), er = output_error(p, dequant(*rtn));
    EXPECT_LT(eg, 0.9 * er) << "bits " << bits << " group " << group << " act_order " << act;
    EXPECT_EQ(g.damp_used, 0.01);
    EXPECT_EQ(g.dead_columns, 0);
  }
}

// Blocked/lazy (float, LAPACK) vs unblocked (double inverse): the same algorithm, so the same codes except
// where rounding differences of ~1e-6 relative push a value across a rounding boundary (then later columns of
// that row legitimately differ a little). Bound: at most 0.2% of weights differ by more than 1e-5, the output
// error within 0.5%.
TEST(Gptq, MatchesUnblockedReference) {
  const Problem p = make_problem(32, 256, 512, 21);
  struct Case {
    int bits;
    int64_t group;
    bool act, stat;
    int block;
  };
  for (const Case& c : {Case{4, kPerChannel, false, false, 128}, Case{4, 128, false, false, 128},
                        Case{3, 128, false, false, 32}, Case{4, 64, true, false, 64},
                        Case{3, 64, true, true, 128}, Case{2, kPerChannel, true, false, 16}}) {
    SCOPED_TRACE(testing::Message() << "bits " << c.bits << " group " << c.group << " act " << c.act
                                    << " static " << c.stat << " block " << c.block);
    const GptqOptions o = options(c.bits, c.group, c.act, c.stat, c.block);
    GptqResult g = gptq_quantize(p.W.data(), p.rows, p.cols, p.H, o, "w");
    const Ref ref = reference_gptq(p, o);
    const std::vector<float> got = dequant(*g.weight);
    int64_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i) differ += std::fabs(got[i] - ref.What[i]) > 1e-5f;
    EXPECT_LE(differ, int64_t(got.size()) / 500) << differ << " of " << got.size();
    const double eg = output_error(p, got), er = output_error(p, ref.What);
    EXPECT_NEAR(eg, er, 5e-3 * er);
  }
}

TEST(Gptq, ActOrderGroupsGiveAValidGIdx) {
  const Problem p = make_problem(16, 256, 256, 31);
  GptqResult g = gptq_quantize(p.W.data(), p.rows, p.cols, p.H, options(4, 64, true), "w");
  const AffineWeight& q = *g.weight;
  ASSERT_NE(q.g_idx, nullptr);
  std::vector<int64_t> order(size_t(p.cols));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return p.H[size_t(a * p.cols + a)] > p.H[size_t(b * p.cols + b)];
  });
  std::vector<int> count(size_t(q.n_groups()), 0);
  for (int64_t j = 0; j < p.cols; ++j) {
    ASSERT_EQ(q.g_idx[order[size_t(j)]], j / 64) << "column " << order[size_t(j)];
    ++count[size_t(q.g_idx[order[size_t(j)]])];
  }
  for (int c : count) EXPECT_EQ(c, 64);
  // The order is not the identity (the test would be vacuous otherwise).
  EXPECT_FALSE(std::is_sorted(order.begin(), order.end()));
  // Without groups or with static groups there is nothing to map.
  EXPECT_EQ(gptq_quantize(p.W.data(), p.rows, p.cols, p.H, options(4, kPerChannel, true), "w").weight->g_idx,
            nullptr);
  EXPECT_EQ(gptq_quantize(p.W.data(), p.rows, p.cols, p.H, options(4, 64, true, true), "w").weight->g_idx,
            nullptr);
}

TEST(Gptq, StaticGroupsUseTheOriginalWeightsRanges) {
  const Problem p = make_problem(16, 128, 256, 41);
  GptqResult g = gptq_quantize(p.W.data(), p.rows, p.cols, p.H, options(3, 32, true, true), "w");
  QuantSpec s;
  s.bits = 3;
  auto rtn = quantize_rtn(p.W.data(), p.rows, p.cols, s, Granularity::Group, 32);
  for (int64_t i = 0; i < p.rows * 4; ++i) {
    EXPECT_EQ(g.weight->scales[i], rtn->scales[i]);
    EXPECT_EQ(g.weight->zeros[i], rtn->zeros[i]);
  }
}

TEST(Gptq, DeadColumnsAreZeroed) {
  Problem p = make_problem(8, 64, 128, 51);
  for (int64_t t = 0; t < p.n; ++t) p.X[size_t(t * p.cols + 5)] = 0;
  for (int64_t j = 0; j < p.cols; ++j) p.H[size_t(5 * p.cols + j)] = p.H[size_t(j * p.cols + 5)] = 0;
  GptqResult g = gptq_quantize(p.W.data(), p.rows, p.cols, p.H, options(4, 32), "w");
  EXPECT_EQ(g.dead_columns, 1);
  const std::vector<float> w = dequant(*g.weight);
  for (int64_t r = 0; r < p.rows; ++r) EXPECT_EQ(w[size_t(r * p.cols + 5)], 0.0f);
}

TEST(Gptq, NonPositiveDefiniteHessian) {
  // Eigenvalues 3 and −1 (mean diagonal 1): H + λI is positive definite only once λ > 1, i.e. at the third
  // ×10 increase of 1% (λ = 10).
  const std::vector<float> W = {0.5f, -0.25f, 1.0f, 0.75f, -1.0f, 0.1f, 0.2f, 0.3f};
  const std::vector<float> H = {1, 2, 2, 1};
  GptqResult g =
      gptq_quantize(W.data(), 4, 2, H, options(4, kPerChannel), "model.layers.0.mlp.up_proj.weight");
  EXPECT_NEAR(g.damp_used, 10.0, 1e-9);
  GptqOptions few = options(4, kPerChannel);
  few.max_damp_retries = 2;
  try {
    gptq_quantize(W.data(), 4, 2, H, few, "model.layers.0.mlp.up_proj.weight");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("model.layers.0.mlp.up_proj.weight: Hessian is not positive definite"),
        std::string::npos)
        << e.what();
  }
  const std::vector<float> bad = {1, NAN, NAN, 1};
  EXPECT_THROW(gptq_quantize(W.data(), 4, 2, bad, options(4, kPerChannel), "w"), Error);
}

}  // namespace
}  // namespace lowbit
