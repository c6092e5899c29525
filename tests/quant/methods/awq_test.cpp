// AWQ: folding the scales leaves the full-precision block unchanged; the clipping search matches a
// brute-force search; on a block with outlier activation channels AWQ's output error is below RTN's.
#include "quant/methods/awq.h"

#include <gtest/gtest.h>

#include <cmath>

#include "kernels/linear.h"
#include "quant/methods/rtn.h"
#include "quant/synth.h"

namespace lowbit {
namespace {

CalibSet random_windows(int n, int T, int vocab, uint32_t seed) {
  CalibSet c;
  c.nsamples = n;
  c.seqlen = T;
  std::mt19937 rng(seed);
  for (int i = 0; i < n * T; ++i) c.tokens.push_back(int32_t(2 + rng() % uint32_t(vocab - 2)));
  return c;
}

std::vector<float> block_outputs(const LlamaModel& m, int layer, Activations a) {
  run_block(m, layer, a, nullptr, true);
  return a.all();
}

double sq_err(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i) e += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return e;
}

TEST(Awq, ScalesAreNormalised) {
  const std::vector<float> m = {0.5f, 2.0f, 8.0f, 0.0f};
  for (float alpha : {0.0f, 0.35f, 0.95f}) {
    const std::vector<float> s = awq_scales(m, alpha);
    float mx = 0, mn = INFINITY;
    for (float v : s) mx = std::max(mx, v), mn = std::min(mn, v);
    EXPECT_NEAR(mx * mn, 1.0f, 1e-5f);
    // s ∝ max(m^α, 1e-4): ratios follow m^α
    EXPECT_NEAR(s[2] / s[1], std::pow(4.0f, alpha), 1e-5f);
  }
  for (float v : awq_scales(m, 0)) EXPECT_EQ(v, 1.0f);
}

TEST(Awq, FoldingKeepsTheBlockExact) {
  for (int kv_heads : {4, 2}) {  // MHA (v→o folded) and GQA
    test::SynthSpec spec;
    spec.n_kv_head = kv_heads;
    auto model = test::make_synth_model(spec);
    const auto& c = model->config();
    Activations a = embed_windows(*model, random_windows(2, 16, c.n_vocab, 3), 16);
    const std::vector<float> before = block_outputs(*model, 0, a);

    std::array<std::vector<float>, 7> W;
    for (LinearKind k : kAllLinears) W[size_t(int(k))] = linear_to_f32(model->linear(0, k));
    std::array<std::vector<float>, 4> s;
    const int64_t sizes[4] = {c.n_embd, int64_t(c.n_head) * c.head_dim, c.n_embd, c.n_ff};
    for (int i = 0; i < 4; ++i) {
      std::vector<float> r = test::randn(size_t(sizes[i]), uint32_t(10 + i), 0.5f);
      for (float& v : r) v = std::exp(v);  // positive, spread over ~e^±1.5
      s[size_t(i)] = r;
    }
    if (kv_heads != c.n_head) s[1].clear();  // v and o shapes differ: no v→o fold
    awq_fold_scales(*model, 0, W, s);
    for (LinearKind k : kAllLinears) {
      const Linear& l = model->linear(0, k);
      model->set_linear(0, k, owned_f32_linear(W[size_t(int(k))], l.rows(), l.cols()));
    }
    const std::vector<float> after = block_outputs(*model, 0, a);
    float mx = 0;
    for (float v : before) mx = std::max(mx, std::fabs(v));
    // A few float roundings per product (scale, divide) in sums of ≤ 128 terms: relative ~1e-6, bound 1e-5.
    for (size_t i = 0; i < before.size(); ++i)
      ASSERT_NEAR(after[i], before[i], 1e-5f * mx) << "kv " << kv_heads;
  }
}

TEST(Awq, ClipBoundsMatchBruteForce) {
  const int64_t rows = 6, cols = 32, n = 40;
  std::vector<float> W = test::randn(size_t(rows * cols), 7), X = test::randn(size_t(n * cols), 8);
  W[3] = 5.0f, W[cols + 17] = -4.0f;  // outliers worth clipping
  AwqOptions o;
  o.spec.bits = 3;
  o.group_size = 16;
  const std::vector<float> m = awq_clip_bounds(W.data(), rows, cols, X.data(), n, o);
  int clipped = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < 2; ++g) {
      float amax = 0;
      for (int64_t j = 0; j < 16; ++j) amax = std::max(amax, std::fabs(W[size_t(r * cols + g * 16 + j)]));
      double best = 1e9;
      float best_m = amax;
      for (int i = 0; i < 10; ++i) {
        const float b = amax * float(1.0 - i / 20.0);
        std::vector<float> t(16);
        for (int64_t j = 0; j < 16; ++j) t[size_t(j)] = std::clamp(W[size_t(r * cols + g * 16 + j)], -b, b);
        std::vector<float> fq(16);
        QuantSpec s;
        s.bits = 3;
        quantize_rtn(t.data(), 1, 16, s, Granularity::Channel, 0, fq.data());
        double e = 0;
        for (int64_t k = 0; k < n; ++k) {
          double d = 0;
          for (int64_t j = 0; j < 16; ++j)
            d +=
                double(X[size_t(k * cols + g * 16 + j)]) * (fq[size_t(j)] - W[size_t(r * cols + g * 16 + j)]);
          e += d * d;
        }
        e /= double(n);
        if (e < best) best = e, best_m = b;
      }
      EXPECT_FLOAT_EQ(m[size_t(r * 2 + g)], best_m) << r << "," << g;
      clipped += best_m < amax;
    }
  EXPECT_GT(clipped, 0);
}

TEST(Awq, BeatsRtnOnABlockWithOutlierChannels) {
  test::SynthSpec spec;
  spec.outlier_channels = {3, 17, 40};
  spec.outlier_gain = 25;
  auto fp = test::make_synth_model(spec), awq = test::make_synth_model(spec),
       rtn = test::make_synth_model(spec);
  const auto& c = fp->config();
  Activations a = embed_windows(*fp, random_windows(6, 48, c.n_vocab, 5), 48);
  const std::vector<float> ref = block_outputs(*fp, 0, a);

  AwqOptions o;
  o.spec.bits = 3;
  o.group_size = 32;
  o.clip_tokens = 64;
  Activations in = a;
  const AwqLayerResult res = awq_quantize_layer(*awq, 0, in, o);
  EXPECT_EQ(in.all(), ref);  // the next layer gets the full-precision outputs (llm-awq)
  for (LinearKind k : kAllLinears) ASSERT_TRUE(awq->linear(0, k).packed) << linear_name(k);
  EXPECT_GT(res.alpha[int(InputSite::AttnIn)], 0.0);        // the outliers make scaling worthwhile
  EXPECT_TRUE(std::isnan(res.alpha[int(InputSite::OIn)]));  // GQA: no v→o scaling

  for (LinearKind k : kAllLinears) {
    const Linear& l = rtn->linear(0, k);
    const std::vector<float> w = linear_to_f32(l);
    Linear q;
    q.packed = quantize_rtn(w.data(), l.rows(), l.cols(), o.spec, Granularity::Group, 32);
    rtn->set_linear(0, k, q);
  }
  const double e_awq = sq_err(block_outputs(*awq, 0, a), ref), e_rtn = sq_err(block_outputs(*rtn, 0, a), ref);
  EXPECT_LT(e_awq, 0.8 * e_rtn) << "awq " << e_awq << " rtn " << e_rtn;
}

}  // namespace
}  // namespace lowbit
