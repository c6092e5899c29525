// KL divergence (eval/kld.h): the scalar row against PyTorch (fixture kld_ref.json from tools/ref_kld.py),
// the SIMD row against the scalar one, the accumulator's summary, and the perplexity hook's row alignment.
#include "eval/kld.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <vector>

#include "core/json.h"
#include "eval/perplexity.h"
#include "kernels/linear.h"
#include "model/llama.h"
#include "test_util.h"

namespace lowbit {
namespace {

// tools/ref_kld.py's generator: every value is a multiple of 1/2048 below 2^13, exact in float32.
std::vector<float> base_row(int r, int V) {
  auto p = std::vector<float>(size_t(V));
  for (int64_t i = 0; i < V; ++i) p[size_t(i)] = float(double((i * 7919 + r * 104729) % 4001 - 2000) / 256.0);
  return p;
}

void ref_rows(const std::string& kind, int r, int V, std::vector<float>& p, std::vector<float>& q) {
  p = base_row(r, V);
  q.resize(size_t(V));
  auto near = [&](int64_t i) { return p[size_t(i)] + float(double((i * 31 + r * 17) % 33 - 16) / 2048.0); };
  if (kind == "peaked") p[size_t(r % V)] += 40.0f;
  for (int64_t i = 0; i < V; ++i) {
    if (kind == "near" || kind == "peaked")
      q[size_t(i)] = near(i);
    else if (kind == "shifted")
      q[size_t(i)] = p[size_t(i)] + 5.0f + float(double((i * 13 + r) % 9 - 4) / 512.0);
    else if (kind == "far")
      q[size_t(i)] = float(double((i * 104729 + r * 7919) % 3001 - 1500) / 128.0);
    else
      q[size_t(i)] = p[size_t(i)];
  }
}

// Two double evaluations of KL from the same float rows differ by rounding only. Each log-sum-exp sums V
// terms in [0, 1] (relative error <= V·ε, so <= V·ε absolute in the log), and each term p·(log p − log q) is
// weighted by p <= 1 with |log p − log q| <= span(p) + span(q) + log V. Hence |Δ KL| <= c·V·ε·(1 + span
// sum + log V); c = 4 covers the two log-sum-exps, the products and the final sum (and hn::Exp's last bit).
double kl_tolerance(const std::vector<float>& p, const std::vector<float>& q) {
  auto span = [](const std::vector<float>& v) {
    auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return double(*hi) - double(*lo);
  };
  const double V = double(p.size());
  return 4 * (V + 8) * std::numeric_limits<double>::epsilon() * (1 + span(p) + span(q) + std::log(V));
}

TEST(Kld, ClosedFormTwoTokens) {
  // P = (1/4, 3/4), Q = (1/2, 1/2): KL = 1/4·ln(1/2) + 3/4·ln(3/2).
  const float p[2] = {0.0f, float(std::log(3.0))}, q[2] = {7.0f, 7.0f};
  const double want = 0.25 * std::log(0.5) + 0.75 * std::log(1.5);
  // p[1] = ln 3 rounded to float: relative error 2^-24 in the logit moves KL by well under 1e-7.
  EXPECT_NEAR(kl_divergence_row_scalar(p, q, 2).kl, want, 1e-7);
  EXPECT_NEAR(kl_divergence_row(p, q, 2).kl, want, 1e-7);
  EXPECT_EQ(kl_divergence_row(p, q, 2).argmax_p, 1);
  EXPECT_EQ(kl_divergence_row(p, q, 2).argmax_q, 0);  // a tie: the first maximum, as torch.argmax
}

TEST(Kld, RowsMatchPyTorch) {
  test::for_each_simd_target([&] {
    std::ifstream f(std::filesystem::path(__FILE__).parent_path() / "kld_ref.json");
    const Json ref = Json::parse(f);
    ASSERT_GE(ref["cases"].size(), 60u);
    std::vector<float> p, q;
    for (const Json& c : ref["cases"]) {
      const std::string kind = c["kind"];
      const int V = c["V"], r = c["r"];
      ref_rows(kind, r, V, p, q);
      const double want = c["kl"], tol = kl_tolerance(p, q);
      const std::string at = kind + " V=" + std::to_string(V) + " r=" + std::to_string(r);
      for (const KlRow& got :
           {kl_divergence_row_scalar(p.data(), q.data(), V), kl_divergence_row(p.data(), q.data(), V)}) {
        EXPECT_NEAR(got.kl, std::max(want, 0.0), tol) << at;
        EXPECT_EQ(got.argmax_p, c["argmax_p"].get<int64_t>()) << at;
        EXPECT_EQ(got.argmax_q, c["argmax_q"].get<int64_t>()) << at;
      }
      if (kind == "same") EXPECT_EQ(kl_divergence_row(p.data(), q.data(), V).kl, 0.0) << at;
    }
  });
}

TEST(Kld, SimdMatchesScalarOnRaggedRows) {
  test::for_each_simd_target([&] {
    std::mt19937 rng(7);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    for (int V : {1, 2, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 127, 1000, 32000, 128256}) {
      for (float scale : {0.01f, 1.0f, 8.0f}) {
        auto p = std::vector<float>(size_t(V)), q = p;
        for (int i = 0; i < V; ++i) {
          p[size_t(i)] = 3 * n01(rng);
          q[size_t(i)] = p[size_t(i)] + scale * n01(rng) - 2.5f;
        }
        const KlRow s = kl_divergence_row_scalar(p.data(), q.data(), V),
                    v = kl_divergence_row(p.data(), q.data(), V);
        EXPECT_NEAR(v.kl, s.kl, kl_tolerance(p, q)) << V << " " << scale;
        EXPECT_EQ(v.argmax_p, s.argmax_p) << V;
        EXPECT_EQ(v.argmax_q, s.argmax_q) << V;
      }
    }
  });
}

TEST(Kld, SummaryStatistics) {
  // Rows whose KLs and argmaxes are known from the scalar twin; 10 rows, the even ones identical.
  const int V = 16, R = 10;
  std::vector<float> base(size_t(R * V)), model(size_t(R * V));
  std::vector<double> kl;
  int agree = 0;
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < V; ++i) {
      base[size_t(r * V + i)] = float((i * 5 + r) % V) / 4;
      model[size_t(r * V + i)] = base[size_t(r * V + i)] + (r % 2 ? float(i * r) / 64 : 0.0f);
    }
    const KlRow k = kl_divergence_row_scalar(&base[size_t(r * V)], &model[size_t(r * V)], V);
    kl.push_back(k.kl);
    agree += k.argmax_p == k.argmax_q;
  }
  KldAccumulator acc;
  acc.add(base.data(), model.data(), 4, V);  // two calls: the accumulator concatenates
  acc.add(base.data() + 4 * V, model.data() + 4 * V, R - 4, V);
  const auto s = acc.summary();
  std::vector<double> sorted = kl;
  std::sort(sorted.begin(), sorted.end());
  double mean = 0;
  for (double x : kl) mean += x / R;
  const double tol = 1e-12;  // V = 16: kl_tolerance's bound is ~1e-13
  EXPECT_EQ(s.n, R);
  EXPECT_NEAR(s.mean, mean, tol);
  EXPECT_NEAR(s.median, (sorted[4] + sorted[5]) / 2, tol);
  EXPECT_NEAR(s.p99, sorted[9], tol);  // nearest rank: ceil(0.99·10) = 10th value
  EXPECT_NEAR(s.max, sorted[9], tol);
  EXPECT_EQ(sorted[0], 0.0);  // the even rows are identical
  EXPECT_DOUBLE_EQ(s.top1_agreement, agree / double(R));
  EXPECT_LT(agree, R);  // the case must exercise disagreement
}

TEST(Kld, PerplexityHookScoresTheRowsThatPredictTokens) {
  const std::string ckpt = test::model_path("stories260K/stories260K.bin");
  LlamaModel base(load_checkpoint(ckpt)), model(load_checkpoint(ckpt));
  // Perturb the model: layer 0's q_proj scaled by 1.1.
  std::vector<float> wq = linear_to_f32(model.linear(0, LinearKind::Q));
  for (float& v : wq) v *= 1.1f;
  const Linear& lq = model.linear(0, LinearKind::Q);
  model.set_linear(0, LinearKind::Q, owned_f32_linear(wq, lq.rows(), lq.cols()));
  const int L = 16, W = 3, V = int(base.config().n_vocab);
  std::vector<int32_t> ids(size_t(L * W + 5));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i == 0 ? 1 : 3 + (i * 37) % (size_t(V) - 3));
  KldAccumulator acc;
  PplOptions o;
  o.seqlen = L;
  o.quiet = true;
  o.on_window = kld_window_hook(base, L, acc);
  perplexity(model, ids, o);
  // Independently: each window through both models; rows 0..L-2 predict tokens 1..L-1.
  double sum = 0, tol = 0;
  for (int w = 0; w < W; ++w) {
    std::vector<float> lb(size_t(L * V)), lm(size_t(L * V));
    auto win = std::span(ids).subspan(size_t(w * L), size_t(L));
    KVCache cb = base.new_cache(L), cm = model.new_cache(L);
    base.forward(win, cb, lb.data());
    model.forward(win, cm, lm.data());
    for (int r = 0; r < L - 1; ++r) {
      sum += kl_divergence_row_scalar(&lb[size_t(r * V)], &lm[size_t(r * V)], V).kl;
      tol += kl_tolerance(std::vector<float>(&lb[size_t(r * V)], &lb[size_t((r + 1) * V)]),
                          std::vector<float>(&lm[size_t(r * V)], &lm[size_t((r + 1) * V)]));
    }
  }
  const auto s = acc.summary();
  EXPECT_EQ(s.n, W * (L - 1));
  ASSERT_GT(sum, 0.0);
  EXPECT_NEAR(s.mean, sum / double(s.n), tol / double(s.n));  // the same logits: KL's rounding only

  KldAccumulator self;
  PplOptions so = o;
  so.on_window = kld_window_hook(base, L, self);
  perplexity(base, ids, so);
  EXPECT_EQ(self.summary().max, 0.0);
  EXPECT_EQ(self.summary().top1_agreement, 1.0);
}

}  // namespace
}  // namespace lowbit
