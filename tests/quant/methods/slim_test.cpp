// The slim method (quant/methods/slim.h): the scale-search grid against PyTorch's linspace, the allocation
// rules on synthetic layers (the average stays b, b − 1 and b + 1 groups pair up by salience, a given
// allocation is used as given), each group's grid (1-bit groups μ ± mean|w|, the others on their fp16
// scale's grid), bad settings as one-line errors, a save → load round trip on the test bed, and every testbed
// linear against tools/ref_slim.py's independent PyTorch port (fixture slim_ref.json).
#include "quant/methods/slim.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/dtype.h"
#include "core/json.h"
#include "eval/perplexity.h"
#include "eval/ppl_texts.h"
#include "io/tokenizer.h"
#include "model/llama.h"
#include "model/save.h"
#include "quant/primitives.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace lowbit {
namespace {

struct Layer {
  int64_t rows, cols, n_seq, per;
  std::vector<float> w, H, x;
};

// W ~ N(0, 1) with a few large entries; x: n_seq sequences of per tokens whose channels have different
// scales; H = 2/N xᵀx (diagonal = true: only its diagonal, so no error is fed forward).
Layer random_layer(int64_t rows, int64_t cols, bool diagonal, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Layer l{rows,
          cols,
          2,
          2 * cols,
          std::vector<float>(size_t(rows * cols)),
          std::vector<float>(size_t(cols * cols), 0.0f),
          {}};
  for (float& v : l.w) v = nd(rng) * (rng() % 50 == 0 ? 8.0f : 1.0f);
  const int64_t N = l.n_seq * l.per;
  l.x.resize(size_t(N * cols));
  std::vector<float> sc(static_cast<size_t>(cols));
  for (float& s : sc) s = std::exp(nd(rng));
  for (int64_t t = 0; t < N; ++t)
    for (int64_t c = 0; c < cols; ++c) l.x[size_t(t * cols + c)] = nd(rng) * sc[size_t(c)];
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      if (diagonal && i != j) continue;
      double s = 0;
      for (int64_t t = 0; t < N; ++t) s += double(l.x[size_t(t * cols + i)]) * l.x[size_t(t * cols + j)];
      l.H[size_t(i * cols + j)] = float(2 * s / double(N));
    }
  return l;
}

std::vector<float> dequantized(const PackedWeight& w) {
  std::vector<float> out(size_t(w.rows * w.cols));
  w.format().dequantize_ref(w, 0, w.rows, out.data());
  return out;
}

SlimOptions options(int bits, int64_t gs, int64_t per) {
  SlimOptions o;
  o.bits = bits;
  o.group_size = gs;
  o.window_tokens = per;
  return o;
}

TEST(SlimSearch, ScaleGridsAreTorchLinspaceBitForBit) {
  // torch.linspace(1.0, 1.1, 51) and (1.0, 0.9, 51) .numpy().view(np.uint32) at indices 1, 7, 8, 9, 25, 26,
  // 49, 50 (PyTorch 1.13 CPU: each 8-lane chunk from its own base).
  const uint32_t up[8] = {0x3f804189, 0x3f81cac1, 0x3f820c4a, 0x3f824dd3,
                          0x3f866666, 0x3f86a7ef, 0x3f8c8b44, 0x3f8ccccd};
  const uint32_t down[8] = {0x3f7f7cee, 0x3f7c6a7f, 0x3f7be76c, 0x3f7b645a,
                            0x3f733333, 0x3f72b020, 0x3f66e978, 0x3f666666};
  const int at[8] = {1, 7, 8, 9, 25, 26, 49, 50};
  const std::vector<float> u = torch_linspace_f32(1.0f, 1.1f, 51), d = torch_linspace_f32(1.0f, 0.9f, 51);
  for (int k = 0; k < 8; ++k) {
    uint32_t a, b;
    std::memcpy(&a, &u[size_t(at[k])], 4);
    std::memcpy(&b, &d[size_t(at[k])], 4);
    EXPECT_EQ(a, up[k]) << at[k];
    EXPECT_EQ(b, down[k]) << at[k];
  }
}

TEST(SlimQuantize, AllocationKeepsTheAverageAndMovesTheLeastAndMostSalientGroups) {
  const Layer l = random_layer(32, 512, false, 1);  // G = 8: i in 1..3
  for (int b : {2, 3}) {
    SlimResult s = slim_quantize(l.w.data(), l.rows, l.cols, l.H, l.x.data(), l.n_seq * l.per, l.n_seq, {},
                                 options(b, 64, l.per), "t");
    ASSERT_EQ(s.bits.size(), 8u);
    EXPECT_EQ(s.sba_error.size(), 3u);
    EXPECT_GE(s.i_star, 1);
    EXPECT_LE(s.i_star, 3);
    int lo = 0, hi = 0, sum = 0;
    for (uint8_t v : s.bits) lo += v == b - 1, hi += v == b + 1, sum += v;
    EXPECT_EQ(lo, s.i_star);
    EXPECT_EQ(hi, s.i_star);
    EXPECT_EQ(sum, 8 * b);
    for (uint8_t v : s.bits) EXPECT_TRUE(v >= b - 1 && v <= b + 1);
    EXPECT_EQ(std::vector<uint8_t>(s.weight->bits, s.weight->bits + 8), s.bits);
  }
}

TEST(SlimQuantize, EachGroupIsOnItsOwnGridAndAGivenAllocationIsUsed) {
  // A diagonal H: no error reaches another column, so every group is fitted on the original weights.
  const Layer l = random_layer(8, 256, true, 2);
  const std::vector<uint8_t> given = {1, 4, 2, 3};
  SlimResult s =
      slim_quantize(l.w.data(), l.rows, l.cols, l.H, nullptr, 0, 1, given, options(2, 64, l.per), "t");
  EXPECT_EQ(s.bits, given);
  const SlimWeight& w = *s.weight;
  const std::vector<float> q = dequantized(w);
  for (int64_t r = 0; r < l.rows; ++r) {
    // Group 0 is 1-bit: μ = mean w, α = mean |w| (fp16), q = μ ± α by the sign of w − μ.
    double sm = 0, sa = 0;
    for (int j = 0; j < 64; ++j) sm += l.w[size_t(r * 256 + j)], sa += std::fabs(l.w[size_t(r * 256 + j)]);
    const float mu = f16_to_f32(f32_to_f16(float(sm / 64))), al = f16_to_f32(f32_to_f16(float(sa / 64)));
    for (int j = 0; j < 64; ++j) {
      const float x = l.w[size_t(r * 256 + j)];
      EXPECT_EQ(q[size_t(r * 256 + j)], x - mu >= 0 ? mu + al : mu - al) << r << " " << j;
    }
    // The others: values S·(k − Z) on the group's fp16 scale, codes within 2^bits.
    for (int g = 1; g < 4; ++g) {
      const float S = f16_to_f32(w.scales[r * 4 + g]);
      EXPECT_EQ(S, f16_to_f32(f32_to_f16(S)));
      for (int j = 0; j < 64; ++j) {
        const float k = q[size_t(r * 256 + g * 64 + j)] / S + float(w.zeros[r * 4 + g]);
        EXPECT_NEAR(k, std::nearbyint(k), 1e-3);
        EXPECT_GE(std::nearbyint(k), 0);
        EXPECT_LT(std::nearbyint(k), 1 << given[size_t(g)]);
      }
    }
  }
}

TEST(SlimQuantize, BadSettingsAreOneLineErrors) {
  const Layer l = random_layer(4, 256, false, 3);
  auto err = [&](int b, int64_t gs, std::vector<uint8_t> given, bool with_x = true) {
    return test::error_of([&] {
      slim_quantize(l.w.data(), 4, 256, l.H, with_x ? l.x.data() : nullptr, l.n_seq * l.per, l.n_seq, given,
                    options(b, gs, l.per), "L");
    });
  };
  EXPECT_EQ(err(2, 64, {}), "(no error)");
  EXPECT_EQ(err(2, 12, {}), "L: slim group 12 must be a multiple of 8 dividing the 256 input columns");
  EXPECT_EQ(err(8, 64, {}), "L: slim wbits 8 is outside 2..7 (groups get wbits − 1 … wbits + 1)");
  EXPECT_EQ(err(2, 64, {2, 2}), "L: the given allocation has 2 groups, the linear 4");
  EXPECT_EQ(err(2, 64, {2, 2, 9, 2}), "L: the given allocation has a group of 9 bits (1..8)");
  EXPECT_EQ(err(2, 64, {}, false), "L: slim's bit allocation needs the calibration inputs (equal sequences)");
}

QuantConfig config(int wbits, int nsamples, int seqlen) {
  QuantConfig qc;
  qc.method = "slim";
  qc.wbits = wbits;
  qc.group = 128;
  qc.calib_file = test::data_path("calib/testbed-calib.txt");
  qc.nsamples = nsamples;
  qc.seqlen = seqlen;
  qc.quiet = true;
  return qc;
}

TEST(SlimMethod, BadSettingsAreOneLineErrors) {
  const std::string dir = test::temp_dir("slbad");
  std::ofstream(dir + "/alloc.json") << R"({"0.mlp.down_proj": [2, 2, 2]})";
  struct Case {
    std::string args, expect;
  } cases[] = {
      {"--wbits 1", "wbits"},
      {"--wbits 8", "wbits"},
      {"--wbits 2 --group 12", "--group 12"},
      {"--wbits 2 --allocation " + dir + "/alloc.json", "no allocation for 0.self_attn.q_proj"},
  };
  for (const Case& c : cases) {
    auto r = test::run_cli("quantize testbed-25m --method slim " + c.args +
                           " --calib calib/testbed-calib.txt --nsamples 1 --seqlen 128 --out " + dir + "/m");
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << ": " << r.err;
  }
}

Json reference() {
  std::ifstream f(std::filesystem::path(__FILE__).parent_path() / "slim_ref.json");
  return Json::parse(f);
}

// Every linear's bit allocation against tools/ref_slim.py run on lowbit's dumps of the same quantization (the
// reference redoes the salience, the KL search over the dumped inputs and the quantization from the dumped W,
// H and X; fixture slim_ref.json), and the reconstruction errors the reference found for lowbit's result and
// its own.
TEST(SlimMethod, TestbedAllocationsMatchTorchReferenceInEveryLinear) {
  const Json ref = reference();
  const std::string mp = test::model_path("testbed-25m");
  auto tok = load_tokenizer_for_model(mp);
  for (const Json& c : ref["cases"]) {
    SCOPED_TRACE(c["settings"].dump());
    const Json& st = c["settings"];
    LlamaModel model(load_checkpoint(mp));
    quantize_model(model, *tok,
                   config(st["wbits"].get<int>(), st["nsamples"].get<int>(), st["seqlen"].get<int>()));
    int checked = 0, mixed = 0;
    for (int l = 0; l < model.config().n_layer; ++l)
      for (LinearKind k : kAllLinears) {
        const std::string name = std::to_string(l) + "." + linear_name(k);
        const SlimWeight* w = model.linear(l, k).packed_as<SlimWeight>();
        ASSERT_NE(w, nullptr) << name;
        const Json& r = c["linears"].at(name);
        const std::vector<int> got(w->bits, w->bits + w->n_groups());
        EXPECT_EQ(got, r["ref_bits"].get<std::vector<int>>()) << name;
        mixed += std::any_of(got.begin(), got.end(), [&](int b) { return b != got[0]; });
        EXPECT_LT(r["e_rel_diff"].get<double>(), 1e-3) << name;  // the acceptance criterion, as measured
        ++checked;
      }
    EXPECT_EQ(checked, 56);
    EXPECT_GE(mixed, 6);  // the down_projs (8 groups) get mixed precision; the 3-group linears cannot
  }
}

TEST(SlimMethod, SaveReloadReproducesPerplexityAndTheAllocationExportsAndImports) {
  const std::string mp = test::model_path("testbed-25m");
  auto tok = load_tokenizer_for_model(mp);
  LlamaModel model(load_checkpoint(mp));
  QuantReport rep = quantize_model(model, *tok, config(2, 2, 256));
  const std::string dir = test::temp_dir("slckpt");
  save_model(model, dir, quantization_config_json(config(2, 2, 256), rep, "testbed-25m"));
  LlamaModel reloaded(load_checkpoint(dir));
  for (int l = 0; l < model.config().n_layer; ++l)
    for (LinearKind k : kAllLinears) {
      const PackedWeight* a = model.linear(l, k).packed.get();
      const PackedWeight* b = reloaded.linear(l, k).packed.get();
      ASSERT_TRUE(a && b && &b->format() == &slim_format());
      EXPECT_EQ(dequantized(*a), dequantized(*b));
    }
  // The allocation exported from the checkpoint, and read back by a quantization that is given it.
  auto r = test::run_cli("info " + dir + " --slim-allocation " + dir + "/alloc.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json alloc = parse_json_file(dir + "/alloc.json");
  EXPECT_EQ(alloc.size(), 56u);
  QuantConfig given = config(2, 1, 128);
  given.options["allocation"] = dir + "/alloc.json";
  LlamaModel again(load_checkpoint(mp));
  quantize_model(again, *tok, given);
  for (int l = 0; l < model.config().n_layer; ++l)
    for (LinearKind k : kAllLinears) {
      const SlimWeight* a = model.linear(l, k).packed_as<SlimWeight>();
      const SlimWeight* b = again.linear(l, k).packed_as<SlimWeight>();
      const std::string key = std::to_string(l) + "." + linear_name(k);
      EXPECT_EQ(alloc.at(key).get<std::vector<int>>(), std::vector<int>(a->bits, a->bits + a->n_groups()))
          << key;
      EXPECT_EQ(std::vector<int>(b->bits, b->bits + b->n_groups()),
                std::vector<int>(a->bits, a->bits + a->n_groups()))
          << key;
    }
  auto ids = tok->encode_with_bos(build_eval_text("wikitext2", test::paths()).text);
  PplOptions po;
  po.seqlen = 256;
  po.max_windows = 2;
  po.quiet = true;
  EXPECT_EQ(perplexity(model, ids, po).ppl, perplexity(reloaded, ids, po).ppl);
}

}  // namespace
}  // namespace lowbit
