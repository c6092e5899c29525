// A quantized checkpoint written by save_model reloads into a model that computes exactly the same thing:
// same packed bytes, same kernels, so the perplexity is bit-identical. Also `lowbit quantize` + `lowbit ppl`
// end to end.
#include <gtest/gtest.h>

#include "core/sha256.h"
#include "eval/perplexity.h"
#include "eval/ppl_texts.h"
#include "io/tokenizer.h"
#include "model/llama.h"
#include "model/save.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace lowbit {
namespace {

TEST(QuantCheckpoint, SaveReloadReproducesPerplexityExactly) {
  const std::string mp = test::model_path("testbed-25m");
  LlamaModel model(load_checkpoint(mp));
  auto tok = load_tokenizer_for_model(mp);
  QuantConfig qc;
  qc.method = "rtn";
  qc.wbits = 3;
  qc.group = 128;
  qc.quiet = true;
  quantize_model(model, *tok, qc);
  const std::string dir = test::temp_dir("qckpt");
  save_model(model, dir, Json{{"quant_method", "rtn"}, {"bits", 3}, {"group_size", 128}});

  LlamaModel reloaded(load_checkpoint(dir));
  EXPECT_EQ(reloaded.checkpoint().config.quantization_config["bits"], 3);
  for (int l = 0; l < model.config().n_layer; ++l)
    for (LinearKind k : kAllLinears) {
      const auto& a = *model.linear(l, k).packed_as<AffineWeight>();
      const auto& b = *reloaded.linear(l, k).packed_as<AffineWeight>();
      ASSERT_TRUE(reloaded.linear(l, k).packed) << l;
      ASSERT_EQ(a.bits, b.bits);
      ASSERT_EQ(sha256_hex(a.codes, a.row_bytes() * size_t(a.rows)),
                sha256_hex(b.codes, b.row_bytes() * size_t(b.rows)));
    }
  auto ids = tok->encode_with_bos(build_eval_text("wikitext2", test::paths()).text);
  PplOptions opt;
  opt.seqlen = 512;
  opt.max_windows = 3;
  opt.quiet = true;
  const double a = perplexity(model, ids, opt).ppl, b = perplexity(reloaded, ids, opt).ppl;
  EXPECT_EQ(a, b);
  // The reloaded tokenizer files came along.
  auto tok2 = load_tokenizer_for_model(dir);
  EXPECT_EQ(tok2->encode_with_bos("Hello world"), tok->encode_with_bos("Hello world"));
}

TEST(QuantCheckpoint, CliQuantizeThenPplWithKld) {
  const std::string dir = test::temp_dir("cliq");
  auto r =
      test::run_cli("quantize testbed-25m --method rtn --wbits 4 --group 128 --out " + dir + "/m --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json s = parse_json_text(r.out, "quantize output");
  EXPECT_NEAR(s["bits_per_weight"].get<double>(), 4 + 24.0 / 128,
              1e-9);  // codes + fp16 scale + u8 zero per 128
  r = test::run_cli("ppl " + dir +
                    "/m -d wikitext2 --seqlen 256 --max-windows 2 --kld-base testbed-25m --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json p = parse_json_text(r.out, "ppl output");
  EXPECT_GT(p[0]["kld"]["mean"].get<double>(), 0.0);
  EXPECT_GT(p[0]["kld"]["top1_agreement"].get<double>(), 0.5);
  r = test::run_cli("quantize testbed-25m --method rtn --wbits 9 --out " + dir + "/bad");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("9"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lowbit
