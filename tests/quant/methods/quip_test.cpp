// The quip method (quant/methods/quip.h) on the real test bed: every linear's codes against
// tools/ref_quip.py's independent PyTorch implementation (fixture quip_ref.json, made from lowbit's dumps of
// the same run: the reference recomputes the codes from the dumped W, H and rotations, so identical codes
// mean identical rescaling, incoherence processing, LDLQ and greedy passes); a save → load round trip; the
// CLI's errors.
#include "quant/methods/quip.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/json.h"
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

Json reference() {
  std::ifstream f(std::filesystem::path(__FILE__).parent_path() / "quip_ref.json");
  return Json::parse(f);
}

// The codes of w, one byte each, row-major: what the reference hashes.
std::string codes_sha256(const QuipWeight& w) {
  std::vector<uint8_t> c(size_t(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t j = 0; j < w.cols; ++j)
      c[size_t(r * w.cols + j)] = uint8_t(packed_code(w.codes + size_t(r) * w.row_bytes(), w.bits, j));
  return sha256_hex(c.data(), c.size());
}

QuantConfig config(const Json& s) {
  QuantConfig qc;
  qc.method = "quip";
  qc.wbits = s["wbits"].get<int>();
  qc.group = kPerChannel;
  for (auto& [k, v] : s["options"].items()) qc.options[k] = v;
  qc.calib_file = test::data_path("calib/testbed-calib.txt");
  qc.nsamples = s["nsamples"].get<int>();
  qc.seqlen = s["seqlen"].get<int>();
  qc.seed = 0;
  qc.quiet = true;
  return qc;
}

// Both fixture cases (2 bits Kronecker ldlq with one greedy pass; 3 bits Hadamard ldlqRG with two) in one
// test: ctest runs each TEST in its own process.
TEST(QuipMethod, TestbedCodesMatchTorchReferenceInEveryLinear) {
  const Json ref = reference();
  const std::string mp = test::model_path("testbed-25m");
  auto tok = load_tokenizer_for_model(mp);
  for (const Json& c : ref["cases"]) {
    SCOPED_TRACE(c["settings"].dump());
    LlamaModel model(load_checkpoint(mp));
    quantize_model(model, *tok, config(c["settings"]));
    int checked = 0;
    for (int l = 0; l < model.config().n_layer; ++l)
      for (LinearKind k : kAllLinears) {
        const std::string name = linear_tensor_name(l, k);
        const QuipWeight* w = model.linear(l, k).packed_as<QuipWeight>();
        ASSERT_NE(w, nullptr) << name;
        const Json& r = c["linears"].at(name);
        EXPECT_EQ(codes_sha256(*w), r["ref_codes_sha256"].get<std::string>()) << name;
        EXPECT_EQ(w->scale, float(r["ref_scale"].get<double>())) << name;
        ++checked;
      }
    EXPECT_EQ(checked, 56);
  }
}

TEST(QuipMethod, SaveReloadReproducesPerplexityExactly) {
  const std::string mp = test::model_path("testbed-25m");
  auto tok = load_tokenizer_for_model(mp);
  LlamaModel model(load_checkpoint(mp));
  Json s = {{"wbits", 2}, {"nsamples", 1}, {"seqlen", 256}, {"options", {{"npasses", 0}}}};
  quantize_model(model, *tok, config(s));
  const std::string dir = test::temp_dir("quipckpt");
  save_model(model, dir, Json{{"quant_method", "quip"}, {"bits", 2}});
  LlamaModel reloaded(load_checkpoint(dir));
  for (int l = 0; l < model.config().n_layer; ++l)
    for (LinearKind k : kAllLinears) {
      const QuipWeight* a = model.linear(l, k).packed_as<QuipWeight>();
      const QuipWeight* b = reloaded.linear(l, k).packed_as<QuipWeight>();
      ASSERT_TRUE(a && b);
      EXPECT_EQ(codes_sha256(*a), codes_sha256(*b));
      EXPECT_EQ(a->scale, b->scale);
      EXPECT_EQ(std::vector<float>(a->d, a->d + a->cols), std::vector<float>(b->d, b->d + b->cols));
      EXPECT_EQ(a->U->a, b->U->a);
      EXPECT_EQ(a->V->perm_in, b->V->perm_in);
    }
  auto ids = tok->encode_with_bos(build_eval_text("wikitext2", test::paths()).text);
  PplOptions po;
  po.seqlen = 256;
  po.max_windows = 2;
  po.quiet = true;
  EXPECT_EQ(perplexity(model, ids, po).ppl, perplexity(reloaded, ids, po).ppl);
}

TEST(QuipMethod, BadSettingsAreOneLineErrors) {
  struct Case {
    std::string args, expect;
  } cases[] = {
      {"--wbits 5", "wbits"},
      {"--wbits 1", "wbits"},
      {"--wbits 2 --group 128", "group"},
      {"--wbits 2 --order lqld", "order"},
      {"--wbits 2 --rotation dense", "rotation"},
  };
  for (const Case& c : cases) {
    auto r = test::run_cli("quantize testbed-25m --method quip " + c.args +
                           " --calib calib/testbed-calib.txt --out " + test::temp_dir("quipbad") + "/m");
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << c.args << ": " << r.err;
  }
}

TEST(QuipMethod, QuantizeRejectsBadBitsAndWidths) {
  std::vector<float> w(7 * 8, 0.5f);
  std::vector<double> H(8 * 8, 0.0);
  for (int i = 0; i < 8; ++i) H[size_t(i * 8 + i)] = 1;
  QuipOptions o;
  o.bits = 5;
  EXPECT_EQ(test::error_of([&] { quip_quantize(w.data(), 7, 8, H, o, "t"); }),
            "t: QuIP quantizes to 2, 3 or 4 bits, not 5");
  o.bits = 2;  // 7 output rows: prime, no Kronecker factorisation
  EXPECT_NE(test::error_of([&] { quip_quantize(w.data(), 7, 8, H, o, "t"); }).find("width 7 is prime"),
            std::string::npos);
  o.rotation = RotationKind::Hadamard;  // 7 = 2^0·7 is not 2^k·{1, 12, 20, 28}
  EXPECT_NE(test::error_of([&] { quip_quantize(w.data(), 7, 8, H, o, "t"); }).find("no Hadamard rotation"),
            std::string::npos);
}

}  // namespace
}  // namespace lowbit
