// Issue 3's acceptance properties on the real test bed (testbed-25m, all 7 linears of every block,
// asymmetric), at a scale a test can afford: 4 calibration windows of 2048 tokens from testbed-calib.txt
// (seed 0) and the first 2 windows of 2048 tokens of WikiText-2.
//  - RTN and GPTQ perplexities equal those of an independent PyTorch implementation run on the same tokens
//    (tools/ref_quant_model.py; fixture testbed_quant_ref.json, regenerate with the command in its
//    "settings"); so do AWQ's (tools/ref_awq_model.py; testbed_awq_ref.json), with the same α everywhere.
//  - GPTQ and AWQ beat RTN at every setting of the table at 4 bits and below; w8 is within 0.1% of
//  FP.
//  - On single real layers (same X, Hessian accumulated by the reference), RTN and GPTQ reach the reference's
//    layer-output error (tools/ref_quant.py; fixture testbed_gptq_layer_ref.json).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include "core/json.h"
#include "eval/perplexity.h"
#include "eval/ppl_texts.h"
#include "io/tokenizer.h"
#include "kernels/affine_matmul.h"
#include "kernels/linear.h"
#include "model/llama.h"
#include "quant/calib.h"
#include "quant/methods/gptq.h"
#include "quant/methods/rtn.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace lowbit {
namespace {

struct Setting {
  const char* method;
  int wbits, group;
  bool act_order = false;
  std::string label() const {
    if (std::string(method) == "fp") return "fp";
    return fmt::format("{} w{} g{}{}", method, wbits, group, act_order ? " act-order" : "");
  }
};

// AWQ's chosen α per layer, [layer][InputSite], by setting label.
using Alphas = std::map<std::string, std::vector<std::array<double, 4>>>;

// Every setting's perplexity. (One test below checks all properties: ctest runs each TEST in its own
// process, so separate tests would quantize the model again.)
std::map<std::string, double> perplexities(Alphas& alphas) {
  {
    const std::string mp = test::model_path("testbed-25m");
    auto tok = load_tokenizer_for_model(mp);
    const std::vector<int32_t> ids = tok->encode_with_bos(build_eval_text("wikitext2", test::paths()).text);
    PplOptions po;
    po.seqlen = 2048;
    po.max_windows = 2;
    po.quiet = true;
    std::map<std::string, double> ppl;
    const std::vector<Setting> settings = {
        {"fp", 16, 0},    {"rtn", 8, -1},         {"rtn", 4, -1},   {"rtn", 4, 128},
        {"rtn", 3, 128},  {"rtn", 3, -1},         {"rtn", 2, 128},  {"gptq", 8, -1},
        {"gptq", 4, -1},  {"gptq", 4, 128},       {"gptq", 3, 128}, {"gptq", 3, -1},
        {"gptq", 2, 128}, {"gptq", 4, 128, true}, {"awq", 4, 128},  {"awq", 3, 128}};
    for (const Setting& s : settings) {
      LlamaModel model(load_checkpoint(mp));
      if (std::string(s.method) != "fp") {
        QuantConfig qc;
        qc.method = s.method;
        qc.wbits = s.wbits;
        qc.group = s.group;
        if (s.act_order) qc.options["act_order"] = true;
        qc.calib_file = test::data_path("calib/testbed-calib.txt");
        qc.nsamples = 4;
        qc.seqlen = 2048;
        qc.seed = 0;
        qc.quiet = true;
        const QuantReport rep = quantize_model(model, *tok, qc);
        if (std::string(s.method) == "awq")
          for (const LayerReport& l : rep.layers) alphas[s.label()].push_back(l.awq_alpha);
      }
      ppl[s.label()] = perplexity(model, ids, po).ppl;
      std::printf("  %-20s wikitext2 (2 windows) ppl %.4f\n", s.label().c_str(), ppl[s.label()]);
    }
    return ppl;
  }
}

Json reference(const char* name = "testbed_quant_ref.json") {
  const auto path = std::filesystem::path(__FILE__).parent_path() / name;
  std::ifstream f(path);
  return Json::parse(f);
}

TEST(TestbedQuant, MatchesTorchReferenceAndCalibratedMethodsBeatRtn) {
  Alphas alphas;
  const auto p = perplexities(alphas);

  // 1. RTN and GPTQ (and the FP forward) against the independent implementation.
  const Json ref = reference();
  ASSERT_EQ(ref["settings"]["nsamples"], 4);
  ASSERT_EQ(ref["settings"]["max_windows"], 2);
  // GPTQ's tolerance is the method's own sensitivity to rounding. Error feedback turns 1e-7 differences in H
  // or H⁻¹ into occasional code flips at near-ties that then propagate through the later columns and layers
  // (the layer test below sees 15 of 147456 codes flip between us and the reference). With 4 calibration
  // windows this is chaotic, so each case's spread s is measured on both implementations under perturbations
  // of rounding size, and s is the relative range (max / min - 1) of all those perplexities:
  //  - the reference with H accumulated in fp64 (its "ppl") and in fp32 ("ppl_fp32_hessian");
  //  - lowbit under four OpenBLAS kernel families (Prescott, Haswell, SkylakeX, Cooperlake: different sgemm
  //    summation orders) and with dampening 0.0099999 and 0.0100001 ("lowbit_perturbed").
  // Measured s: 0.02% (w8), 1.2-4.9% (w4/w3), 15.7% (w2g128). A case may differ by twice its own s: eight
  // samples of a chaotic result understate its range. (The issue allows 2% at 128 windows, where the chaos
  // is smaller: see the closing notes.)
  const Json& fp32h = ref["ppl_fp32_hessian"]["wikitext2"];
  const Json& perturbed = ref["lowbit_perturbed"]["wikitext2"];
  std::map<std::string, double> spread;
  for (const auto& [label, v] : fp32h.items()) {
    std::vector<double> runs = {ref["ppl"]["wikitext2"].at(label).get<double>(), v.get<double>()};
    ASSERT_TRUE(perturbed.contains(label)) << label;
    for (const auto& x : perturbed.at(label)) runs.push_back(x.get<double>());
    ASSERT_EQ(runs.size(), 8u) << label;
    const auto [lo, hi] = std::minmax_element(runs.begin(), runs.end());
    spread[label] = *hi / *lo - 1;
  }
  ASSERT_EQ(spread.size(), 7u);
  int compared = 0;
  for (const auto& [label, v] : ref["ppl"]["wikitext2"].items()) {
    const double r = v.get<double>();
    ASSERT_TRUE(p.count(label)) << label;
    const double rel = std::abs(p.at(label) / r - 1);
    // FP and RTN: the same codes (both divide in fp32 by the same fp16-rounded scale), so only the forward's
    // summation order differs: fp32 logits carry ~1e-6 relative error, which moves a mean NLL of ~4.5 nats by
    // ~1e-5; 1e-4 leaves a 10x margin.
    double tol = 1e-4;
    if (label.rfind("gptq", 0) == 0) {
      ASSERT_TRUE(spread.count(label)) << label;
      tol = 2 * spread.at(label);
    }
    EXPECT_LT(rel, tol) << label << ": lowbit " << p.at(label) << " reference " << r;
    ++compared;
  }
  EXPECT_EQ(compared, 14);

  // 1b. AWQ against its independent implementation (tools/ref_awq_model.py, fixture testbed_awq_ref.json):
  // the same α at every layer and site (a discrete choice, so exact), and the same perplexity up to
  // rounding chaos. Clipping picks one of 10 bounds per (row, group) by an output error that changes when a
  // single code of Q(W·s) flips, so an ulp of difference in s (our powf and torch's pow differ in the last
  // bit) changes some choices: the fixture holds the reference rerun with s computed in fp64 and rounded once
  // (s moves by at most an ulp, α stays), and that alone moves its perplexity by 0.03% (w4g128) and 0.70%
  // (w3g128). A setting may differ by twice the larger of the two.
  const Json awq = reference("testbed_awq_ref.json");
  ASSERT_EQ(awq["settings"]["nsamples"], 4);
  ASSERT_EQ(awq["settings"]["max_windows"], 2);
  ASSERT_EQ(awq["settings"]["awq_seqlen"], 512);
  double awq_spread = 0;
  for (const auto& [label, v] : awq["ppl_fp64_scales"]["wikitext2"].items())
    awq_spread =
        std::max(awq_spread, std::abs(v.get<double>() / awq["ppl"]["wikitext2"].at(label).get<double>() - 1));
  int awq_compared = 0;
  for (const auto& [label, v] : awq["ppl"]["wikitext2"].items()) {
    SCOPED_TRACE(label);
    ASSERT_TRUE(p.count(label) && alphas.count(label));
    const Json& ref_alpha = awq["alpha"].at(label);
    ASSERT_EQ(ref_alpha.size(), alphas.at(label).size());
    for (size_t l = 0; l < ref_alpha.size(); ++l)
      for (size_t site = 0; site < 4; ++site) {
        const double ours = alphas.at(label)[l][site];
        if (ref_alpha[l][site].is_null())  // not searched (o_proj with GQA)
          EXPECT_TRUE(std::isnan(ours)) << "layer " << l << " site " << site;
        else
          EXPECT_NEAR(ours, ref_alpha[l][site].get<double>(), 1e-9) << "layer " << l << " site " << site;
      }
    const double r = v.get<double>();
    EXPECT_LT(std::abs(p.at(label) / r - 1), 2 * awq_spread)
        << "lowbit " << p.at(label) << " reference " << r << " (its spread " << awq_spread << ")";
    ++awq_compared;
  }
  EXPECT_EQ(awq_compared, 2);

  // 2. GPTQ and AWQ beat RTN at every setting of the table at 4 bits and below.
  for (const char* s : {"w4 g-1", "w4 g128", "w3 g128", "w3 g-1", "w2 g128"})
    EXPECT_LT(p.at(fmt::format("gptq {}", s)), p.at(fmt::format("rtn {}", s))) << s;
  EXPECT_LT(p.at("gptq w4 g128 act-order"), p.at("rtn w4 g128"));
  for (const char* s : {"w4 g128", "w3 g128"})
    EXPECT_LT(p.at(fmt::format("awq {}", s)), p.at(fmt::format("rtn {}", s))) << s;

  // 3. w8 per channel is within 0.1% of full precision.
  EXPECT_LT(std::abs(p.at("rtn w8 g-1") / p.at("fp") - 1), 1e-3);
  EXPECT_LT(std::abs(p.at("gptq w8 g-1") / p.at("fp") - 1), 1e-3);
}

// Σ over every step-th token of ‖A x‖² (ref_quant.py's subsample for its output error: step = max(1,
// n/4096)).
double sum_sq_outputs(const std::vector<float>& A, const std::vector<float>& X, int64_t rows, int64_t cols) {
  const int64_t n = int64_t(X.size()) / cols, step = std::max<int64_t>(1, n / 4096);
  double s = 0;
  for (int64_t t = 0; t < n; t += step)
    for (int64_t r = 0; r < rows; ++r) {
      double y = 0;
      for (int64_t c = 0; c < cols; ++c) y += double(A[size_t(r * cols + c)]) * X[size_t(t * cols + c)];
      s += y * y;
    }
  return s;
}

TEST(TestbedQuant, LayerOutputErrorMatchesTorchReference) {
  const Json ref = reference("testbed_gptq_layer_ref.json");
  const std::string mp = test::model_path("testbed-25m");
  LlamaModel model(load_checkpoint(mp));
  auto tok = load_tokenizer_for_model(mp);
  const CalibSet calib = load_calibration(*tok, test::data_path("calib/testbed-calib.txt"),
                                          ref["nsamples"].get<int>(), ref["seqlen"].get<int>(), 0);
  for (const auto& [site_name, site_ref] : ref["sites"].items()) {
    SCOPED_TRACE(site_name);
    const int layer = std::stoi(site_name);
    const bool down = site_name.find("down") != std::string::npos;
    const InputSite site = down ? InputSite::DownIn : InputSite::AttnIn;
    const LinearKind kind = down ? LinearKind::Down : LinearKind::Q;
    // The site's input X (tokens, cols) with full-precision earlier layers, as quant_eval --dump writes it.
    Activations acts = embed_windows(model, calib, calib.seqlen);
    for (int l = 0; l < layer; ++l) run_block(model, l, acts, nullptr, true);
    struct Capture : BlockObserver {
      int layer;
      InputSite site;
      std::vector<float> x;
      void observe(int l, InputSite s, const float* p, int64_t n, int64_t c) override {
        if (l == layer && s == site) x.insert(x.end(), p, p + n * c);
        if (s == site) throw StopBlock{};
      }
    } cap;
    cap.layer = layer, cap.site = site;
    run_block(model, layer, acts, &cap, false);
    const Linear& lin = model.linear(layer, kind);
    const int64_t rows = lin.rows(), cols = lin.cols();
    ASSERT_EQ(site_ref["W"], Json({rows, cols}));
    ASSERT_EQ(site_ref["X"], Json({int64_t(cap.x.size()) / cols, cols}));
    const std::vector<float> W = linear_to_f32(lin);
    // H = 2/n Σ xᵀx (the reference's add_batch gives the same up to its scale, which GPTQ does not see).
    std::vector<float> H(size_t(cols * cols), 0.0f);
    const int64_t n = int64_t(cap.x.size()) / cols;
    for (int64_t t = 0; t < n; ++t) {
      const float* x = cap.x.data() + t * cols;
      for (int64_t i = 0; i < cols; ++i)
        for (int64_t j = i; j < cols; ++j) H[size_t(i * cols + j)] += x[i] * x[j];
    }
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = i; j < cols; ++j)
        H[size_t(i * cols + j)] = H[size_t(j * cols + i)] = H[size_t(i * cols + j)] * 2.0f / float(n);
    const double den = sum_sq_outputs(W, cap.x, rows, cols);
    int compared = 0;
    for (const auto& [name, want] : site_ref["rel_out_err"].items()) {
      const bool rtn = name.rfind("rtn", 0) == 0;
      const int bits = name[name.find('w') + 1] - '0';
      const int group = name.find("g128") != std::string::npos ? 128 : kPerChannel;
      QuantSpec spec;
      spec.bits = bits;
      std::shared_ptr<const AffineWeight> q;
      if (rtn) {
        q = quantize_rtn(W.data(), rows, cols, spec, group > 0 ? Granularity::Group : Granularity::Channel,
                         group);
      } else {
        GptqOptions o;
        o.spec = spec;
        o.group_size = group;
        o.act_order = name.find("act") != std::string::npos;
        q = gptq_quantize(W.data(), rows, cols, H, o, name).weight;
      }
      std::vector<float> D(W.size());
      affine_dequantize_rows_scalar(*q, 0, rows, D.data());
      for (size_t i = 0; i < D.size(); ++i) D[i] = W[i] - D[i];
      const double got = sum_sq_outputs(D, cap.x, rows, cols) / den, r = want.get<double>();
      // Same algorithm on the same X: the codes are equal except a few near-ties that the two Hessians' fp32
      // rounding tips the other way (measured: at most 15 of 147456, moving the error by 0.02%); 0.1%.
      EXPECT_NEAR(got / r, 1.0, 1e-3) << name << ": lowbit " << got << " reference " << r;
      ++compared;
    }
    EXPECT_EQ(compared, 7);
  }
}

}  // namespace
}  // namespace lowbit
