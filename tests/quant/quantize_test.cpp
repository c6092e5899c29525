// quantize_model end to end on a small synthetic model: config validation errors, every linear packed, GPTQ
// and AWQ closer to the full-precision model than RTN.
#include "quant/quantize.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "kernels/linear.h"
#include "kernels/ops.h"
#include "quant/methods/rtn.h"
#include "quant/synth.h"
#include "test_util.h"

namespace lowbit {
namespace {

struct Fixture {
  std::string calib;
  test::ByteTokenizer tok{64};
  Fixture() {
    calib = test::temp_dir("quant") + "/calib.txt";
    test::write_bytes(calib, test::random_text(4000, 9));
  }
  QuantConfig cfg(const std::string& method, int bits = 4, int group = 32) const {
    QuantConfig c;
    c.method = method;
    c.wbits = bits;
    c.group = group;
    c.nsamples = 6;
    c.seqlen = 64;
    c.calib_file = calib;
    c.quiet = true;
    return c;
  }
};

std::string error_of(LlamaModel& m, const Tokenizer& tok, const QuantConfig& c) {
  try {
    quantize_model(m, tok, c);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Quantize, ConfigErrors) {
  Fixture f;
  auto m = test::make_synth_model({});
  QuantConfig c = f.cfg("rtn", 1);
  EXPECT_EQ(error_of(*m, f.tok, c), "--wbits 1 is not supported by rtn (supported: 2..8 bits)");
  c.wbits = 9;
  EXPECT_EQ(error_of(*m, f.tok, c), "--wbits 9 is not supported by rtn (supported: 2..8 bits)");
  c = f.cfg("gptq", 4, 48);
  EXPECT_EQ(error_of(*m, f.tok, c),
            "--group 48 does not divide in_features 64 of model.layers.0.self_attn.q_proj.weight");
  c = f.cfg("hqq");
  // (The list goes on with any method a test registered: the toy method's test adds one.)
  EXPECT_TRUE(error_of(*m, f.tok, c).starts_with("--method 'hqq' is not one of rtn, gptq, awq"));
  c = f.cfg("awq");
  c.options["act_order"] = true;
  EXPECT_EQ(error_of(*m, f.tok, c), "--act-order applies to gptq only, not awq");
  c = f.cfg("gptq");
  c.calib_file = "";
  EXPECT_EQ(error_of(*m, f.tok, c), "--method gptq needs a calibration text (--calib FILE)");
  c = f.cfg("gptq");
  c.seqlen = 5000;
  EXPECT_NE(error_of(*m, f.tok, c).find("calibration text has 4001 tokens, fewer than seqlen + 1 = 5001"),
            std::string::npos);
  // A NaN weight is named.
  std::vector<float> w = linear_to_f32(m->linear(1, LinearKind::Up));
  w[size_t(3 * 64 + 7)] = NAN;
  m->set_linear(1, LinearKind::Up, owned_f32_linear(w, 128, 64));
  EXPECT_EQ(error_of(*m, f.tok, f.cfg("rtn")), "model.layers.1.mlp.up_proj.weight contains NaN at (3, 7)");
  // Nothing was quantized by the failed calls.
  for (LinearKind k : kAllLinears) EXPECT_FALSE(m->linear(0, k).packed);
}

// Mean squared logit difference to the full-precision model over windows of the calibration text.
double logit_mse(const LlamaModel& q, const LlamaModel& fp, const Fixture& f) {
  const std::vector<int32_t> ids = f.tok.encode_with_bos(test::random_text(4000, 9));
  const int64_t T = 64, V = fp.config().n_vocab;
  double e = 0;
  for (int w = 0; w < 4; ++w) {
    std::vector<float> a(size_t(T * V)), b(a.size());
    KVCache ca = q.new_cache(int(T)), cb = fp.new_cache(int(T));
    std::span<const int32_t> win(ids.data() + w * 500, size_t(T));
    q.forward(win, ca, a.data());
    fp.forward(win, cb, b.data());
    for (size_t i = 0; i < a.size(); ++i) e += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  }
  return e;
}

TEST(Quantize, MethodsPackEveryLinearAndCalibratedOnesBeatRtn) {
  Fixture f;
  test::SynthSpec spec;
  spec.outlier_channels = {5, 33};
  spec.outlier_gain = 10;
  auto fp = test::make_synth_model(spec);
  std::map<std::string, double> err;
  for (const char* method : {"rtn", "gptq", "gptq-act-order", "gptq-true-seq", "awq"}) {
    auto m = test::make_synth_model(spec);
    const std::string name = method;
    QuantConfig c = f.cfg(name.substr(0, 4) == "gptq" ? "gptq" : name, 3, 32);
    if (name == "gptq-act-order") c.options["act_order"] = true;
    if (name == "gptq-true-seq") c.options["true_sequential"] = true;
    const QuantReport r = quantize_model(*m, f.tok, c);
    for (int l = 0; l < 2; ++l)
      for (LinearKind k : kAllLinears) ASSERT_TRUE(m->linear(l, k).packed) << method;
    ASSERT_EQ(r.linears.size(), 14u);
    ASSERT_EQ(r.layers.size(), 2u);
    // 3-bit codes + (16-bit scale + 8-bit zero) per 32 weights (+ a 32-bit g_idx per column with act-order).
    // Per layer: 36864 weights, 512 input columns over the 7 linears.
    const double idx = name == "gptq-act-order" ? 32.0 * 512 / 36864 : 0;
    EXPECT_NEAR(r.bits_per_weight, 3 + 24.0 / 32 + idx, 1e-9) << method;
    for (const LinearReport& lr : r.linears) {
      EXPECT_GT(lr.rel_err, 0.0);
      EXPECT_LT(lr.rel_err, 0.5);
      EXPECT_EQ(std::isnan(lr.loss), c.method != "gptq");
    }
    EXPECT_EQ(r.calib_sha256.empty(), c.method == "rtn");
    err[name] = logit_mse(*m, *fp, f);
  }
  for (auto& [k, v] : err) std::printf("  %s logit mse %.5g\n", k.c_str(), v);
  EXPECT_LT(err["gptq"], err["rtn"]);
  EXPECT_LT(err["gptq-act-order"], err["rtn"]);
  EXPECT_LT(err["gptq-true-seq"], err["rtn"]);
  EXPECT_LT(err["awq"], err["rtn"]);
}

TEST(Quantize, EightBitIsNearlyLossless) {
  Fixture f;
  auto fp = test::make_synth_model({}), m = test::make_synth_model({});
  quantize_model(*m, f.tok, f.cfg("gptq", 8, -1));
  auto r4 = test::make_synth_model({});
  quantize_model(*r4, f.tok, f.cfg("rtn", 4, -1));
  // Error variance scales with S² ∝ 4^−bits: 8-bit ≈ 1/256 of 4-bit; require at least 1/100.
  EXPECT_LT(logit_mse(*m, *fp, f), 1e-2 * logit_mse(*r4, *fp, f));
}

// quantize_model moves each finished layer to a scratch-file mapping; what the model then holds must be,
// byte for byte, what quantize_rtn makes of the same weights.
TEST(Quantize, FinishedLayersHoldExactlyTheQuantizedBytes) {
  Fixture f;
  auto fp = test::make_synth_model({}), m = test::make_synth_model({});
  quantize_model(*m, f.tok, f.cfg("rtn", 3, 32));
  QuantSpec spec;
  spec.bits = 3;
  for (int l = 0; l < 2; ++l)
    for (LinearKind k : kAllLinears) {
      const Linear& src = fp->linear(l, k);
      const std::vector<float> w = linear_to_f32(src);
      const auto want = quantize_rtn(w.data(), src.rows(), src.cols(), spec, Granularity::Group, 32);
      const AffineWeight& got = *m->linear(l, k).packed_as<AffineWeight>();
      ASSERT_EQ(got.rows, want->rows);
      ASSERT_EQ(got.n_groups(), want->n_groups());
      const size_t nc = got.row_bytes() * size_t(got.rows), ng = size_t(got.rows * got.n_groups());
      EXPECT_EQ(std::vector<uint8_t>(got.codes, got.codes + nc),
                std::vector<uint8_t>(want->codes, want->codes + nc));
      EXPECT_EQ(std::vector<uint16_t>(got.scales, got.scales + ng),
                std::vector<uint16_t>(want->scales, want->scales + ng));
      EXPECT_EQ(std::vector<uint8_t>(got.zeros, got.zeros + ng),
                std::vector<uint8_t>(want->zeros, want->zeros + ng));
      EXPECT_NE(got.codes, want->codes);
    }
}

// Spilling the calibration activations to disk changes nothing (same f32 values); bf16 rounds the inputs
// every layer sees, which perturbs the Hessians by ~2^-9 relative, a second-order change next to 3-bit
// rounding: its model must stay within 10% of the f32 one's error.
TEST(Quantize, CalibrationActivationStorage) {
  Fixture f;
  auto fp = test::make_synth_model({});
  std::map<std::string, double> err;
  std::map<std::string, std::vector<uint8_t>> codes;
  for (const char* where : {"f32", "disk", "bf16"}) {
    auto m = test::make_synth_model({});
    QuantConfig c = f.cfg("gptq", 3, 32);
    c.calib_acts = where;
    c.spill_dir = test::temp_dir("spill");
    quantize_model(*m, f.tok, c);
    for (int l = 0; l < 2; ++l)
      for (LinearKind k : kAllLinears) {
        const AffineWeight& q = *m->linear(l, k).packed_as<AffineWeight>();
        codes[where].insert(codes[where].end(), q.codes, q.codes + q.row_bytes() * size_t(q.rows));
      }
    err[where] = logit_mse(*m, *fp, f);
  }
  EXPECT_EQ(codes["disk"], codes["f32"]);
  EXPECT_EQ(err["disk"], err["f32"]);
  EXPECT_NE(codes["bf16"], codes["f32"]);
  EXPECT_LT(err["bf16"], 1.1 * err["f32"]);
  QuantConfig bad = f.cfg("gptq");
  bad.calib_acts = "fp8";
  auto m = test::make_synth_model({});
  EXPECT_EQ(error_of(*m, f.tok, bad), "calibration activations 'fp8' is not one of f32, bf16, disk");
  QuantConfig nodir = f.cfg("rtn");
  nodir.spill_dir = "/nonexistent/lowbit-spill";
  EXPECT_EQ(
      error_of(*m, f.tok, nodir),
      "/nonexistent/lowbit-spill: cannot create a scratch file: No such file or directory (quantized layers "
      "are kept there; choose another with --spill-dir or TMPDIR)");
}

// abits through the activation hook: every block linear gets the per-token quantizer, and the forward then
// equals one whose inputs were quantized by hand (here: the first linear of a block, on its own).
TEST(Quantize, ActivationBitsSetThePerTokenHookOnEveryBlockLinear) {
  test::SynthSpec spec;
  auto m = test::make_synth_model(spec);
  const Linear q_before = m->linear(0, LinearKind::Q);
  set_activation_bits(*m, 4);
  for (int l = 0; l < spec.n_layer; ++l)
    for (LinearKind k : kAllLinears) {
      const Linear& lin = m->linear(l, k);
      ASSERT_TRUE(lin.input) << l << " " << linear_name(k);
      EXPECT_EQ(lin.input->name(), "per_token_a4");
    }
  const Linear& q = m->linear(0, LinearKind::Q);
  const int64_t n = 3, cols = q.cols();
  std::vector<float> x(size_t(n * cols)), xq(x.size()), y(size_t(n * q.rows())), want(y.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(float(i) * 0.37f);
  ops::linear(q, x.data(), n, y.data());
  PerTokenQuant(4).apply(x.data(), n, cols, xq.data());
  ops::linear(q_before, xq.data(), n, want.data());
  EXPECT_EQ(y, want);
  EXPECT_THROW(set_activation_bits(*m, 9), Error);
}

}  // namespace
}  // namespace lowbit
