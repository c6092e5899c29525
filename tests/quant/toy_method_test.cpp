// A method added the way docs/architecture.md says a method is added: this one file and one registration
// line. "Round toward zero" (truncation instead of rounding, symmetric per group) is deliberately useless; it
// only has to reach every place that lists methods: `lowbit quantize --help` and its flags, validation,
// quantization_config, the study spec's keys and the report's labels.
#include <gtest/gtest.h>

#include <cmath>

#include "cli/commands.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "kernels/linear.h"
#include "quant/quantize.h"
#include "study/report_internal.h"
#include "study/spec.h"
#include "test_util.h"

namespace lowbit {
namespace {

// q = trunc(shrink · w / S) + Z with the symmetric (S, Z) of the group: |ŵ| never exceeds |w|.
void toward_zero_layer(LayerJob& job) {
  const QuantConfig& cfg = job.cfg;
  QuantSpec spec = affine_spec(cfg);
  spec.sym = true;
  const float shrink = float(cfg.opt<double>("shrink"));
  quantize_each_linear(job, [&](const std::vector<float>& w, int64_t rows, int64_t cols) {
    const int64_t gs = cfg.group == kPerChannel ? cols : cfg.group;
    PackedBuilder pb(spec.bits, rows, cols, gs, false);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < cols / gs; ++g) {
        const float* x = w.data() + r * cols + g * gs;
        const AffineParams p = find_params(x, gs, spec);
        pb.set_params(r, g, p);
        for (int64_t j = 0; j < gs; ++j) {
          const float q = std::trunc(shrink * x[j] / p.scale) + float(p.zero);
          pb.set_code(r, g * gs + j, uint32_t(std::clamp(q, 0.0f, float(spec.maxq()))));
        }
      }
    return pb.finish();
  });
}

const Method& toward_zero_method() {
  static const Method m = [] {
    Method m;
    m.name = "toy_rtz";
    m.label = "Toy-RTZ";
    m.summary = "test-only: round toward zero";
    m.format = "affine";
    m.options = {{"shrink", OptionType::Number, 1.0, "multiplies w before truncation", 0, 1}};
    m.options.front().min_exclusive = true;
    m.quantize_layer = toward_zero_layer;
    return m;
  }();
  return m;
}

// The one registration line, run by the tests below (once per process: gtest may repeat tests).
bool registered() {
  static const bool once = (register_method(toward_zero_method()), true);
  return once;
}

TEST(ToyMethod, AppearsInQuantizeHelpAndItsFlagWorks) {
  ASSERT_TRUE(registered());
  CLI::App app;
  cli::Global g;
  cli::Commands cmds;
  cli::add_quantize(app, g, cmds);
  const std::string help = app.get_subcommand("quantize")->help();
  EXPECT_NE(help.find("toy_rtz: test-only: round toward zero"), std::string::npos) << help;
  EXPECT_NE(help.find("--shrink"), std::string::npos) << help;
  EXPECT_NE(help.find("toy_rtz: multiplies w before truncation"), std::string::npos) << help;

  // End to end through the CLI's own parsing and running, on the test bed.
  const std::string out = test::temp_dir("toy") + "/q";
  app.parse("quantize " + test::model_path("testbed-25m") +
                " --method toy_rtz --wbits 4 --group 64 --shrink 0.5 --out " + out,
            false);
  for (auto& [sub, run] : cmds)
    if (sub->parsed()) ASSERT_EQ(run(), 0);
  const Checkpoint ck = load_checkpoint(out);
  const Json& qc = ck.config.quantization_config;
  EXPECT_EQ(qc.at("quant_method"), "toy_rtz");
  EXPECT_EQ(qc.at("shrink"), 0.5);
  EXPECT_EQ(qc.at("group_size"), 64);
  // Every weight of a linear moved toward zero (or stayed): |ŵ| ≤ |w| up to the float division's rounding.
  LlamaModel q(load_checkpoint(out)), fp(load_checkpoint(test::model_path("testbed-25m")));
  const std::vector<float> wq = linear_to_f32(q.linear(1, LinearKind::Down));
  const std::vector<float> wf = linear_to_f32(fp.linear(1, LinearKind::Down));
  ASSERT_TRUE(q.linear(1, LinearKind::Down).packed);
  for (size_t i = 0; i < wq.size(); ++i) ASSERT_LE(std::fabs(wq[i]), std::fabs(wf[i]) * (1 + 1e-6f)) << i;
}

TEST(ToyMethod, IsAStudyMethodWithItsOptions) {
  ASSERT_TRUE(registered());
  const StudySpec s = parse_study(R"(
models = ["testbed-25m"]
[perplexity]
datasets = ["wikitext2"]
[[rows]]
method = "toy_rtz"
wbits = [4, 3]
shrink = 0.75
)",
                                  "toy.toml");
  ASSERT_EQ(s.rows.size(), 2u);
  EXPECT_EQ(s.rows[0].settings.at("shrink"), 0.75);
  EXPECT_EQ(s.rows[1].quant.opt<double>("shrink"), 0.75);
  EXPECT_EQ(s.rows[0].label(), "toy_rtz w4 a16 g128 shrink=0.75");
  EXPECT_EQ(report_detail::method_label(s.rows[0].settings),
            "Toy-RTZ (shrink=0.75)");  // the report's row name
  // Its options are checked like a built-in method's, and are not accepted elsewhere.
  auto error = [](const std::string& toml) {
    try {
      parse_study("models = [\"m\"]\n[perplexity]\ndatasets = [\"wikitext2\"]\n[[rows]]\n" + toml, "t.toml");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(
      error("method = \"toy_rtz\"\nwbits = 4\nshrink = 2.0"),
      "t.toml: rows[0]: --shrink 2.0: toy_rtz takes a value in (0, 1] (multiplies w before truncation)");
  EXPECT_EQ(error("method = \"rtn\"\nwbits = 4\nshrink = 0.5"),
            "t.toml: rows[0]: --shrink applies to toy_rtz only, not rtn");
}

}  // namespace
}  // namespace lowbit
