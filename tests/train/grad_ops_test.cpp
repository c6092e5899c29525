// Finite-difference checks of every backward of the training engine on small shapes. Each op's scalar output
// L = Σ w ∘ op(inputs) (w random) is differentiated numerically by central differences in double where the
// op can be evaluated in double, else in float with a step h chosen so truncation (O(h²)) and rounding
// (O(ε_f32 |L| / h)) errors both stay near 1e-3 of the gradient's scale: the tolerances below are that.
#include "train/grad_ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "formats/random_affine.h"
#include "kernels/logits.h"
#include "kernels/ops.h"
#include "test_util.h"
#include "train/attention.h"
#include "train/lora.h"

namespace lowbit {
namespace {

std::vector<float> randn(size_t n, std::mt19937& rng, float sd = 1.0f) {
  std::normal_distribution<float> nd(0, sd);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

// Central difference of f at every element of x (perturbed in place, restored), compared with grad: the
// largest difference must be within tol of the gradient's largest magnitude.
void expect_fd(std::vector<float>& x, const std::vector<float>& grad, const std::function<double()>& f,
               float h, double tol, const char* what) {
  ASSERT_EQ(x.size(), grad.size());
  double scale = 1e-12, worst = 0;
  for (float g : grad) scale = std::max(scale, double(std::fabs(g)));
  for (size_t i = 0; i < x.size(); ++i) {
    const float x0 = x[i];
    x[i] = x0 + h;
    const double fp = f();
    x[i] = x0 - h;
    const double fm = f();
    x[i] = x0;
    const double num = (fp - fm) / (2.0 * double(h));
    worst = std::max(worst, std::fabs(num - grad[i]));
  }
  EXPECT_LT(worst, tol * scale) << what << ": largest |numeric − analytic| " << worst << " vs scale "
                                << scale;
}

TEST(TrainGradOps, RmsNormBackward) {
  std::mt19937 rng(1);
  const int64_t n = 3;
  const int d = 8;
  auto x = randn(size_t(n * d), rng), w = randn(size_t(d), rng), wy = randn(size_t(n * d), rng);
  auto f = [&] {
    std::vector<float> y(x.size());
    ops::rms_norm(x.data(), w.data(), n, d, 1e-5, y.data());
    return dot(y, wy);
  };
  std::vector<float> dx(x.size()), dw(size_t(d), 0.0f);
  rms_norm_backward(x.data(), w.data(), n, d, 1e-5, wy.data(), dx.data(), false, dw.data());
  expect_fd(x, dx, f, 1e-2f, 2e-3, "dx");
  expect_fd(w, dw, f, 1e-2f, 2e-3, "dw");
  // accumulate adds
  std::vector<float> dx2(x.size(), 1.0f);
  rms_norm_backward(x.data(), w.data(), n, d, 1e-5, wy.data(), dx2.data(), true);
  for (size_t i = 0; i < dx.size(); ++i) EXPECT_FLOAT_EQ(dx2[i], dx[i] + 1.0f);
}

TEST(TrainGradOps, SiluMulBackward) {
  std::mt19937 rng(2);
  const size_t n = 40;
  auto g = randn(n, rng, 3.0f), u = randn(n, rng), wy = randn(n, rng);
  auto f = [&] {
    std::vector<float> h(g);
    silu_mul_scalar(h.data(), u.data(), n);
    return dot(h, wy);
  };
  std::vector<float> dg(n), du(n);
  silu_mul_backward(g.data(), u.data(), wy.data(), n, dg.data(), du.data());
  expect_fd(g, dg, f, 1e-2f, 2e-3, "dg");
  expect_fd(u, du, f, 1e-2f, 2e-3, "du");
}

TEST(TrainGradOps, CrossEntropyValueAndBackward) {
  std::mt19937 rng(3);
  const int64_t m = 4, V = 11;
  auto logits = randn(size_t(m * V), rng, 2.0f);
  const std::vector<int32_t> labels = {3, kIgnoreLabel, 0, 10};
  // value: Σ over labelled rows of lse − logit[label], computed here directly in double
  double want = 0;
  for (int64_t i = 0; i < m; ++i) {
    if (labels[size_t(i)] == kIgnoreLabel) continue;
    double s = 0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(double(logits[size_t(i * V + j)]));
    want += std::log(s) - logits[size_t(i * V + labels[size_t(i)])];
  }
  EXPECT_NEAR(cross_entropy(logits.data(), labels.data(), m, V), want, 1e-12 * std::fabs(want) + 1e-12);
  auto f = [&] { return 0.5 * cross_entropy(logits.data(), labels.data(), m, V); };
  std::vector<float> grad(logits);
  const double total = cross_entropy_backward(grad.data(), labels.data(), m, V, 0.5f);
  EXPECT_NEAR(total, want, 1e-12 * std::fabs(want));
  for (int64_t j = 0; j < V; ++j) EXPECT_EQ(grad[size_t(1 * V + j)], 0.0f);  // the ignored row
  expect_fd(logits, grad, f, 1e-2f, 1e-3, "dlogits");
}

TEST(TrainGradOps, CrossEntropyRowMatchesScalarTwinOnEverySimdTarget) {
  std::mt19937 rng(9);
  const int64_t V = 1003;  // not a multiple of any lane count
  const auto row = randn(size_t(V), rng, 4.0f);
  std::vector<float> want(row);
  const double want_loss = cross_entropy_grad_row_scalar(want.data(), V, 17, 0.25f);
  test::for_each_simd_target([&] {
    std::vector<float> got(row);
    const double loss = cross_entropy_grad_row(got.data(), V, 17, 0.25f);
    EXPECT_NEAR(loss, want_loss, 1e-6 * std::fabs(want_loss));
    // f32 exp lanes (a few ulp) times an f32 scale: ~1e-6 relative per probability
    for (int64_t i = 0; i < V; ++i)
      EXPECT_NEAR(got[size_t(i)], want[size_t(i)], 2e-6f * std::fabs(want[size_t(i)]) + 1e-12f);
  });
}

TEST(TrainGradOps, EmbeddingBackwardAddsRepeatedTokens) {
  const int d = 2;
  const std::vector<int32_t> tok = {2, 0, 2};
  const std::vector<float> dx = {1, 2, 3, 4, 5, 6};
  std::vector<float> dE(size_t(3 * d), 0.0f);
  embedding_backward(tok.data(), 3, d, dx.data(), dE.data());
  EXPECT_EQ(dE, (std::vector<float>{3, 4, 0, 0, 6, 8}));
}

TEST(TrainGradOps, RopeBackwardIsTheTranspose) {
  // <R x, y> = <x, Rᵀ y>, with Rᵀ = the rotation by the negated frequencies; both layouts.
  std::mt19937 rng(4);
  const int64_t n = 5;
  const int H = 3, hd = 8;
  std::vector<float> inv = {1.0f, 0.3f, 0.05f, 0.001f}, neg(inv);
  for (float& v : neg) v = -v;
  const std::vector<int> pos = {0, 1, 7, 2, 100};
  for (bool inter : {false, true}) {
    auto x = randn(size_t(n * H * hd), rng), y = randn(size_t(n * H * hd), rng);
    auto rx = x, ry = y;
    ops::rope(rx.data(), n, H, hd, inv.data(), inter, 0, pos.data());
    ops::rope(ry.data(), n, H, hd, neg.data(), inter, 0, pos.data());
    EXPECT_NEAR(dot(rx, y), dot(x, ry), 1e-5 * std::sqrt(double(x.size())));
    ops::rope(rx.data(), n, H, hd, neg.data(), inter, 0, pos.data());  // Rᵀ R x = x
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(rx[i], x[i], 1e-5f);
  }
}

TEST(TrainGradOps, AttentionBackward) {
  std::mt19937 rng(5);
  const AttnShape a{4, 2, 4};
  const std::vector<int> starts = {0, 3, 3, 8};  // an empty sequence in the middle
  const int64_t n = 8, qs = 16, kvs = 8;
  auto q = randn(size_t(n * qs), rng), k = randn(size_t(n * kvs), rng), v = randn(size_t(n * kvs), rng);
  auto wy = randn(size_t(n * qs), rng);
  const size_t np = size_t(attention_prob_offsets(starts, a).back());
  auto f = [&] {
    std::vector<float> out(size_t(n * qs)), P(np);
    attention_forward(q.data(), k.data(), v.data(), starts, a, out.data(), P.data());
    return dot(out, wy);
  };
  std::vector<float> out(size_t(n * qs)), P(np);
  attention_forward(q.data(), k.data(), v.data(), starts, a, out.data(), P.data());
  // probabilities: rows sum to 1, zero above the diagonal
  for (int64_t i = 0; i < 3; ++i) {
    double s = 0;
    for (int64_t j = 0; j < 3; ++j) s += P[size_t(i * 3 + j)];
    EXPECT_NEAR(s, 1.0, 1e-6);
    for (int64_t j = i + 1; j < 3; ++j) EXPECT_EQ(P[size_t(i * 3 + j)], 0.0f);
  }
  std::vector<float> dq(q.size()), dk(k.size()), dv(v.size());
  attention_backward(q.data(), k.data(), v.data(), P.data(), starts, a, wy.data(), dq.data(), dk.data(),
                     dv.data());
  expect_fd(q, dq, f, 1e-2f, 3e-3, "dq");
  expect_fd(k, dk, f, 1e-2f, 3e-3, "dk");
  expect_fd(v, dv, f, 1e-2f, 3e-3, "dv");
}

TEST(TrainGradOps, GemmAtMatchesScalarTwin) {
  std::mt19937 rng(6);
  const int64_t m = 5, n = 7, k = 9;
  auto A = randn(size_t(k * m), rng), B = randn(size_t(k * n), rng);
  std::vector<float> C(size_t(m * n), 1.0f), Cs(C);
  ops::gemm_at(m, n, k, 0.5f, A.data(), m, B.data(), n, 2.0f, C.data(), n);
  ops::gemm_at_scalar(m, n, k, 0.5f, A.data(), m, B.data(), n, 2.0f, Cs.data(), n);
  // f32 sums of k products of N(0,1) values: ~k·ε·|terms| apart from the double-summed twin
  for (size_t i = 0; i < C.size(); ++i) EXPECT_NEAR(C[i], Cs[i], 1e-5f * k);
}

TEST(TrainGradOps, LinearBackwardMatchesScalarTwinForEveryWeightKind) {
  std::mt19937 rng(7);
  const int64_t rows = 48, cols = 64, n = 6;
  auto dy = randn(size_t(n * rows), rng);
  auto check = [&](const Linear& w, const char* what) {
    std::vector<float> dx(size_t(n * cols), 0.5f), ds(dx);
    ops::linear_backward(w, dy.data(), n, dx.data(), true);
    ops::linear_backward_scalar(w, dy.data(), n, ds.data(), true);
    double scale = 0;
    for (float v : ds) scale = std::max(scale, double(std::fabs(v)));
    for (size_t i = 0; i < dx.size(); ++i) EXPECT_NEAR(dx[i], ds[i], 1e-5 * scale * rows) << what << " " << i;
  };
  auto wf = randn(size_t(rows * cols), rng);
  check(owned_f32_linear(wf, rows, cols), "f32");
  std::vector<uint16_t> wb(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) wb[i] = f32_to_bf16(wf[i]);
  Linear bf;
  bf.dense = DenseWeight{DType::BF16, wb.data(), rows, cols};
  check(bf, "bf16");
  test::RandomAffine p = test::random_affine(4, rows, cols, 16, false, rng);
  check(packed_linear(std::make_shared<AffineWeight>(p.w)), "affine w4g16");
  // and the backward is the transpose of the forward: <W x, dy> = <x, Wᵀ dy>
  auto x = randn(size_t(n * cols), rng);
  const Linear pw = packed_linear(std::make_shared<AffineWeight>(p.w));
  std::vector<float> y(size_t(n * rows)), dx(size_t(n * cols));
  ops::linear(pw, x.data(), n, y.data());
  ops::linear_backward(pw, dy.data(), n, dx.data(), false);
  EXPECT_NEAR(dot(y, dy), dot(x, dx), 1e-4 * std::sqrt(double(n * rows * cols)));
}

TEST(TrainGradOps, LinearBackwardRefusesAnInputTransform) {
  Linear w = owned_f32_linear(std::vector<float>(4, 1.0f), 2, 2);
  w.input = std::make_shared<PerTokenQuant>(8);
  std::vector<float> dy(2), dx(2);
  EXPECT_THROW(ops::linear_backward(w, dy.data(), 1, dx.data(), false), std::runtime_error);
}

// The adapter's gradients by finite differences, with and without IEC and dropout.
void check_adapter(bool iec, double dropout) {
  std::mt19937 rng(8);
  LoraAdapter ad;
  ad.in = 12, ad.out = 8, ad.r = 4, ad.scale = 0.75f, ad.iec = iec, ad.dropout = dropout;
  ad.A = randn(size_t(ad.r * ad.in), rng);
  ad.B = randn(size_t(ad.out * ad.r), rng);
  std::vector<float> ba = {0.3f}, bb = {-0.6f};
  const int64_t n = 5;
  auto x = randn(size_t(n * ad.in), rng), wy = randn(size_t(n * ad.out), rng);
  const uint64_t key = 42;
  auto f = [&] {
    ad.beta_a = ba[0], ad.beta_b = bb[0];
    std::vector<float> y(size_t(n * ad.out), 0.0f);
    LoraAdapter::Saved s;
    ad.forward(x.data(), n, y.data(), s, key);
    return dot(y, wy);
  };
  f();
  LoraAdapter::Saved s;
  std::vector<float> y(size_t(n * ad.out), 0.0f);
  ad.forward(x.data(), n, y.data(), s, key);
  ad.dA.assign(ad.A.size(), 0.0f);
  ad.dB.assign(ad.B.size(), 0.0f);
  ad.dbeta_a = ad.dbeta_b = 0;
  std::vector<float> dx(x.size(), 0.0f);
  ad.backward(x.data(), n, wy.data(), s, key, dx.data());
  const std::string tag = std::string(iec ? "iec" : "plain") + (dropout > 0 ? "+dropout" : "");
  expect_fd(ad.A, ad.dA, f, 1e-2f, 2e-3, (tag + " dA").c_str());
  expect_fd(ad.B, ad.dB, f, 1e-2f, 2e-3, (tag + " dB").c_str());
  expect_fd(x, dx, f, 1e-2f, 2e-3, (tag + " dx").c_str());
  if (iec) {
    expect_fd(ba, {ad.dbeta_a}, f, 1e-2f, 2e-3, "dbeta_a");
    expect_fd(bb, {ad.dbeta_b}, f, 1e-2f, 2e-3, "dbeta_b");
  }
  // delta(): the adapter is the linear map x ↦ ΔW x (without dropout)
  if (dropout == 0) {
    ad.beta_a = ba[0], ad.beta_b = bb[0];  // f() last ran at β − h
    const auto dw = ad.delta();
    std::vector<float> yd(size_t(n * ad.out));
    ops::gemm(true, n, ad.out, ad.in, 1.0f, x.data(), ad.in, dw.data(), ad.in, 0.0f, yd.data(), ad.out);
    for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(yd[i], y[i], 1e-4f) << tag;
  }
}

TEST(TrainLora, AdapterGradients) {
  check_adapter(false, 0.0);
  check_adapter(true, 0.0);
  check_adapter(false, 0.25);
  check_adapter(true, 0.25);
}

}  // namespace
}  // namespace lowbit
