// DB-LLM (train/fdb.h, train/dbllm.h): FDB's initial state is 2-bit RTN exactly, its plane rule picks the
// nearest level, its backward is the straight-through estimator; the trainer's weight and distillation
// gradients match finite differences; the method runs end to end, its zero-step output is the RTN model bit
// for bit, and a killed run resumes to the same weights.
#include "train/dbllm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "core/mmap.h"
#include "formats/affine.h"
#include "formats/dualbin.h"
#include "kernels/ops.h"
#include "model/sampler.h"
#include "quant/methods/rtn.h"
#include "quant/quantize.h"
#include "quant/synth.h"
#include "test_util.h"
#include "train/fdb.h"
#include "train/llama_train.h"

namespace lowbit {
namespace {

// Gaussian rows, some shifted up or down so that every zero-point 0..3 of 2-bit RTN occurs.
std::vector<float> test_weight(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 0.02f);
  std::vector<float> w(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float shift = r % 4 == 1 ? 0.05f : r % 4 == 2 ? -0.05f : r % 4 == 3 ? 0.012f : 0.0f;
    for (int64_t c = 0; c < cols; ++c) w[size_t(r * cols + c)] = nd(rng) + shift;
  }
  return w;
}

TEST(Fdb, InitialStateIsRtnW2Exactly) {
  for (int64_t group : {32, 128}) {
    const int64_t rows = 24, cols = 256;
    const std::vector<float> w = test_weight(rows, cols, 5);
    QuantSpec spec;
    spec.bits = 2;
    std::vector<float> fake(w.size());
    const auto rtn = quantize_rtn(w.data(), rows, cols, spec, Granularity::Group, group, fake.data());
    bool zero_seen[4] = {};
    for (int64_t i = 0; i < rows * (cols / group); ++i) zero_seen[rtn->zeros[i]] = true;
    for (bool z : zero_seen) EXPECT_TRUE(z) << "the fixture should exercise every zero-point";

    FdbLinear f(w, rows, cols, group);
    std::vector<float> w_hat(w.size());
    f.weight(w_hat.data());
    for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(w_hat[i], fake[i]) << "group " << group << " at " << i;
    EXPECT_EQ(f.latent, w);
    // The packed weight dequantizes to the same bits.
    const auto q = f.pack();
    std::vector<float> deq(w.size());
    dualbin_format().dequantize_ref(*q, 0, rows, deq.data());
    for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(deq[i], fake[i]);
    EXPECT_DOUBLE_EQ(q->bits_per_weight(), 2.0 + 32.0 / double(group));
  }
}

TEST(Fdb, PlaneRuleKeepsTheNearestLevelOfEveryInitialPattern) {
  // With the initial scales, eq. 6–7 (signs generalised) choose the nearest of the four levels: on weights
  // with no exact ties they reproduce RTN's codes for every zero-point.
  const int64_t rows = 16, cols = 128;
  FdbLinear f(test_weight(rows, cols, 9), rows, cols, 64);
  const std::vector<uint8_t> b1 = f.b1, b2 = f.b2;
  f.refresh();
  EXPECT_EQ(f.b1, b1);
  EXPECT_EQ(f.b2, b2);
  // A weight moved past a level's midpoint changes plane.
  const float a1 = f.alpha1[0], a2 = f.alpha2[0];
  f.latent[0] = a1 + a2;  // exactly the level α1 + α2: b1 = b2 = 1
  f.latent[1] = a2;       // the level α2 alone
  f.latent[2] = 0;
  f.latent[3] = a1;
  f.refresh();
  EXPECT_EQ(int(f.b1[0]) * 2 + f.b2[0], 3);
  EXPECT_EQ(int(f.b1[1]) * 2 + f.b2[1], 1);
  EXPECT_EQ(int(f.b1[2]) * 2 + f.b2[2], 0);
  EXPECT_EQ(int(f.b1[3]) * 2 + f.b2[3], 2);
}

TEST(Fdb, BackwardIsStraightThroughWithPlaneSumsForTheScales) {
  const int64_t rows = 8, cols = 64, group = 32;
  FdbLinear f(test_weight(rows, cols, 3), rows, cols, group);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> g(size_t(rows * cols));
  for (float& v : g) v = nd(rng);
  f.backward(g.data());
  f.backward(g.data());  // accumulates
  for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(f.d_latent[i], 2 * g[i]);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols / group; ++k) {
      double s1 = 0, s2 = 0;
      for (int64_t c = k * group; c < (k + 1) * group; ++c) {
        s1 += f.b1[size_t(r * cols + c)] ? g[size_t(r * cols + c)] : 0.0;
        s2 += f.b2[size_t(r * cols + c)] ? g[size_t(r * cols + c)] : 0.0;
      }
      EXPECT_NEAR(f.d_alpha1[size_t(r * 2 + k)], 2 * s1, 1e-5);
      EXPECT_NEAR(f.d_alpha2[size_t(r * 2 + k)], 2 * s2, 1e-5);
    }
}

test::SynthSpec small_spec() {
  test::SynthSpec s;
  s.n_embd = 32, s.n_layer = 2, s.n_head = 4, s.n_kv_head = 2, s.head_dim = 8, s.n_ff = 64, s.n_vocab = 48;
  return s;
}

TrainBatch two_sequences(int vocab) {
  std::mt19937 rng(7);
  TrainBatch b;
  for (int len : {9, 6}) {
    std::vector<int32_t> tok(static_cast<size_t>(len)), lab(static_cast<size_t>(len));
    for (int32_t& t : tok) t = int32_t(rng() % uint32_t(vocab));
    for (int t = 0; t < len; ++t) lab[size_t(t)] = t + 1 < len ? tok[size_t(t + 1)] : kIgnoreLabel;
    b.add(tok, lab);
  }
  return b;
}

TEST(DbLlmTrainer, WeightGradientsOfTheDistillationLossMatchFiniteDifferences) {
  // γ = 0 (the weights of DAD are constants of the backward, so only γ = 0 is the derivative of the loss
  // value itself; the weighting is checked against PyTorch in dad_test.cpp).
  auto model = test::make_synth_model(small_spec());
  LoraConfig none;
  none.targets.clear();
  LoraSet lora(*model, none);
  const TrainBatch b = two_sequences(48);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> teacher(b.tokens.size() * 32);
  for (float& v : teacher) v = nd(rng);
  // Two linears made trainable: an early attention one and the last MLP one.
  const std::pair<int, LinearKind> trained[2] = {{0, LinearKind::K}, {1, LinearKind::Down}};
  std::vector<std::vector<float>> w(2), grad(2);
  for (int i = 0; i < 2; ++i) {
    const Linear& lin = model->linear(trained[i].first, trained[i].second);
    w[size_t(i)] = linear_to_f32(lin);
    grad[size_t(i)].assign(w[size_t(i)].size(), 0.0f);
  }
  auto set_weights = [&](double eps, const std::vector<std::vector<float>>& dir) {
    for (int i = 0; i < 2; ++i) {
      std::vector<float> v = w[size_t(i)];
      for (size_t j = 0; j < v.size(); ++j) v[j] += float(eps) * dir[size_t(i)][j];
      const Linear& lin = model->linear(trained[i].first, trained[i].second);
      const int64_t rows = lin.rows(), cols = lin.cols();
      model->set_linear(trained[i].first, trained[i].second, owned_f32_linear(std::move(v), rows, cols));
    }
  };
  std::vector<std::vector<float>> zero = {std::vector<float>(w[0].size()), std::vector<float>(w[1].size())};
  set_weights(0, zero);
  LlamaTrainer tr(*model, lora);
  tr.set_weight_grads([&](int l, LinearKind k) -> float* {
    for (int i = 0; i < 2; ++i)
      if (trained[i].first == l && trained[i].second == k) return grad[size_t(i)].data();
    return nullptr;
  });
  const float scale = 1.0f / float(b.n_targets());
  Distill dist{teacher.data(), 0.0, {}};
  tr.forward_backward(b, scale, 0, dist);
  std::vector<std::vector<float>> u = zero;
  double analytic = 0, gnorm = 0;
  for (int i = 0; i < 2; ++i)
    for (size_t j = 0; j < u[size_t(i)].size(); ++j) {
      u[size_t(i)][j] = nd(rng);
      analytic += double(grad[size_t(i)][j]) * u[size_t(i)][j];
      gnorm += double(grad[size_t(i)][j]) * grad[size_t(i)][j];
    }
  auto L = [&](double eps) {
    set_weights(eps, u);
    Distill d{teacher.data(), 0.0, {}};
    tr.set_weight_grads(nullptr);
    const double l = tr.forward_backward(b, 1.0f, 0, d).sum * scale;
    return l;
  };
  // ε as in llama_train_test.cpp: curvature O(ε²) and f32 rounding O(1e-6/ε) both ≪ 1e-3 of the slope.
  const double eps = 1e-3;
  const double numeric = (L(eps) - L(-eps)) / (2 * eps);
  EXPECT_NEAR(numeric, analytic, 2e-3 * std::sqrt(gnorm * 4096.0) + 1e-3 * std::fabs(analytic));
  EXPECT_GT(std::fabs(analytic), 1e-4);
}

QuantConfig db_config(int64_t steps, const std::string& work_dir) {
  register_train_methods();
  QuantConfig c;
  c.method = "db-llm";
  c.wbits = 2;
  c.group = 32;
  c.quiet = true;
  c.work_dir = work_dir;
  c.options = {{"train_steps", steps},     {"train_batch", 2}, {"train_seq_len", 12},
               {"train_samples", 4},       {"train_lr", 1e-3}, {"train_save_every", 1},
               {"train_data", "generated"}};
  return c;
}

// Every block linear of a model, dequantized.
std::vector<float> all_weights(const LlamaModel& m) {
  std::vector<float> out;
  for (int l = 0; l < m.config().n_layer; ++l)
    for (LinearKind k : kAllLinears) {
      const std::vector<float> w = linear_to_f32(m.linear(l, k));
      out.insert(out.end(), w.begin(), w.end());
    }
  return out;
}

TEST(DbLlm, ZeroStepsIsTheRtnModelAndTrainingMovesTheLoss) {
  test::ByteTokenizer tok{48};
  auto rtn = test::make_synth_model(small_spec());
  QuantConfig rc;
  rc.method = "rtn";
  rc.wbits = 2;
  rc.group = 32;
  rc.quiet = true;
  quantize_model(*rtn, tok, rc);
  auto m0 = test::make_synth_model(small_spec());
  const QuantReport rep = quantize_model(*m0, tok, db_config(0, ""));
  for (int l = 0; l < 2; ++l)
    for (LinearKind k : kAllLinears) ASSERT_EQ(m0->linear(l, k).packed->format().name, "dualbin");
  EXPECT_EQ(all_weights(*m0), all_weights(*rtn));
  EXPECT_NEAR(rep.bits_per_weight, 3.0, 1e-12);  // 2 + 32/32

  auto m5 = test::make_synth_model(small_spec());
  quantize_model(*m5, tok, db_config(5, ""));
  EXPECT_NE(all_weights(*m5), all_weights(*rtn));
}

TEST(DbLlm, KilledRunResumesToTheSameWeights) {
  test::ByteTokenizer tok{48};
  const std::string dir = test::temp_dir("dbllm_resume");
  auto whole = test::make_synth_model(small_spec());
  quantize_model(*whole, tok, db_config(4, dir + "/a"));
  auto killed = test::make_synth_model(small_spec());
  set_db_llm_step_hook([](int64_t step) {
    if (step == 2) throw Error("killed");
  });
  EXPECT_THROW(quantize_model(*killed, tok, db_config(4, dir + "/b")), Error);
  set_db_llm_step_hook(nullptr);
  auto resumed = test::make_synth_model(small_spec());
  quantize_model(*resumed, tok, db_config(4, dir + "/b"));
  EXPECT_EQ(all_weights(*resumed), all_weights(*whole));
  // Other settings in the same work dir are refused, not mixed in.
  auto other = test::make_synth_model(small_spec());
  QuantConfig c = db_config(6, dir + "/b");
  EXPECT_THROW(quantize_model(*other, tok, c), Error);
}

TEST(DbLlm, CalibrationTextWindowsAreRecordedAndRequired) {
  test::ByteTokenizer tok{48};
  const std::string dir = test::temp_dir("dbllm_calib");
  std::string text;
  for (int i = 0; i < 400; ++i)
    text += "the quick brown fox jumps over the lazy dog " + std::to_string(i) + "\n";
  const std::string path = dir + "/calib.txt";
  write_file_atomic(path, text);
  QuantConfig c = db_config(2, "");
  c.options["train_data"] = "calib";
  auto m = test::make_synth_model(small_spec());
  EXPECT_THROW(quantize_model(*m, tok, c), Error);  // no --calib given
  c.calib_file = path;
  auto m2 = test::make_synth_model(small_spec());
  const QuantReport rep = quantize_model(*m2, tok, c);
  EXPECT_EQ(rep.calib_sha256.size(), 64u);
  const Json qc = quantization_config_json(c, rep, "synthetic");
  EXPECT_EQ(qc["calibration"]["sha256"], rep.calib_sha256);
}

TEST(DbLlm, SelfGeneratedDataIsDeterministicAndStartsGreedy) {
  auto m = test::make_synth_model(small_spec());
  const auto a = generate_self_data(*m, 3, 10, 42, 3, true);
  const auto b = generate_self_data(*m, 3, 10, 42, 3, true);
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), 3u);
  for (const auto& s : a) {
    ASSERT_EQ(s.size(), 10u);
    EXPECT_NE(s[0], m->config().bos_token_id);
    // Positions 1..3 are the model's top-1.
    KVCache cache = m->new_cache(10);
    std::vector<float> logits(10 * 48);
    m->forward(std::span<const int32_t>(s.data(), 3), cache, logits.data());
    for (int t = 0; t < 3; ++t) EXPECT_EQ(s[size_t(t + 1)], argmax(logits.data() + t * 48, 48));
  }
  EXPECT_NE(generate_self_data(*m, 3, 10, 43, 3, true), a);
}

}  // namespace
}  // namespace lowbit
