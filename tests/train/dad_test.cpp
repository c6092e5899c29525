// DB-LLM's Deviation-Aware Distillation loss (train/grad_ops.h dad_loss_backward) against PyTorch autograd in
// float64 on a fixture (tools/ref_dad.py -> dad_ref.json), SIMD and scalar twin.
//
// Tolerances from the arithmetic: the C++ side forms p = softmax(z) in f32 (Exp within a few ulp, so each p
// within ~8 ε_f32 relative), sums in double, and takes H = lse − Σ p·z and CE = lse − Σ p_T·z_S, whose
// errors are ≲ 8 ε_f32 · Σ p|z| ≲ 1e-6 · max|z| absolute. The weight (H_T·H_S)^γ then carries γ times the
// entropies' relative error. The gradient w·scale·(p_S − p_T) is rounded to f32 once: within
// w·scale·(16 ε_f32 · max(p) + 1e-7) of the reference per element.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/json.h"
#include "train/grad_ops.h"

namespace lowbit {
namespace {

Json fixture() {
  std::ifstream f(std::filesystem::path(__FILE__).parent_path() / "dad_ref.json");
  EXPECT_TRUE(f) << "dad_ref.json missing";
  return Json::parse(f);
}

void check_case(const Json& c, bool scalar) {
  const int64_t m = c["m"], V = c["V"];
  const double gamma = c["gamma"];
  const float scale = c["scale"];
  std::vector<float> zs = c["zs"].get<std::vector<float>>(), zt = c["zt"].get<std::vector<float>>();
  std::vector<float> w(static_cast<size_t>(m));
  const DadSums s = scalar ? dad_loss_backward_scalar(zs.data(), zt.data(), m, V, gamma, scale, w.data())
                           : dad_loss_backward(zs.data(), zt.data(), m, V, gamma, scale, w.data());
  const std::string name = c["name"].get<std::string>() + (scalar ? " scalar" : " simd");
  double zmax = 0;
  for (float v : c["zs"].get<std::vector<float>>()) zmax = std::max(zmax, double(std::fabs(v)));
  const double abs_tol = 2e-6 * std::max(1.0, zmax);  // per row, see the header comment
  EXPECT_NEAR(s.ce, c["ce"].get<double>(), abs_tol * double(m)) << name;
  EXPECT_NEAR(s.loss, c["loss"].get<double>(), 1e-5 * std::fabs(c["loss"].get<double>()) + abs_tol * m)
      << name;
  const std::vector<double> wref = c["weights"].get<std::vector<double>>();
  for (int64_t i = 0; i < m; ++i)
    EXPECT_NEAR(w[size_t(i)], wref[size_t(i)], 1e-5 * wref[size_t(i)] + 1e-6) << name;
  const std::vector<double> g = c["grad"].get<std::vector<double>>();
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < V; ++j) {
      const double tol = wref[size_t(i)] * scale * 2e-6 + 1e-9;
      ASSERT_NEAR(zs[size_t(i * V + j)], g[size_t(i * V + j)], tol) << name << " row " << i << " col " << j;
    }
}

TEST(Dad, MatchesTorchAutograd) {
  const Json f = fixture();
  ASSERT_GE(f["cases"].size(), 4u);
  for (const Json& c : f["cases"]) {
    check_case(c, false);
    check_case(c, true);
  }
}

TEST(Dad, GammaZeroIsPlainDistillation) {
  // γ = 0: every weight 1, the loss the soft cross-entropy, the gradient p_S − p_T summing to 0 per row.
  const Json f = fixture();
  for (const Json& c : f["cases"]) {
    if (c["gamma"].get<double>() != 0) continue;
    const int64_t m = c["m"], V = c["V"];
    std::vector<float> zs = c["zs"].get<std::vector<float>>(), zt = c["zt"].get<std::vector<float>>();
    const DadSums s = dad_loss_backward(zs.data(), zt.data(), m, V, 0.0, 1.0f);
    EXPECT_DOUBLE_EQ(s.weight, double(m));
    EXPECT_DOUBLE_EQ(s.loss, s.ce);
    for (int64_t i = 0; i < m; ++i) {
      double sum = 0;
      for (int64_t j = 0; j < V; ++j) sum += zs[size_t(i * V + j)];
      EXPECT_NEAR(sum, 0.0, 1e-6);
    }
  }
}

}  // namespace
}  // namespace lowbit
