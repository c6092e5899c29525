// The nf4 method (quant/methods/nf4.h): bitsandbytes' NF4 quantization and double quantization written out
// here from their definitions, IR-QLoRA's ICQ on crafted blocks (ties, an exhaustive double-precision entropy
// check), the method's registry entry and group rule, a save → load round trip, `lowbit quantize` + `lowbit
// ppl`, and every linear of testbed-25m against tools/ref_nf4.py's independent NumPy implementation
// (tests/formats/nf4_ref.json): codes, double-quantized absmax and ICQ's chosen shift identical.
#include "quant/methods/nf4.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "core/json.h"
#include "core/sha256.h"
#include "eval/perplexity.h"
#include "eval/ppl_texts.h"
#include "io/tokenizer.h"
#include "kernels/linear.h"
#include "model/llama.h"
#include "model/save.h"
#include "quant/quantize.h"
#include "quant/synth.h"
#include "study/spec.h"
#include "test_util.h"

namespace lowbit {
namespace {

std::vector<float> dequantize(const Nf4Weight& w) {
  std::vector<float> out(size_t(w.rows * w.cols));
  nf4_dequantize_rows_scalar(w, 0, w.rows, out.data());
  return out;
}

uint8_t code_at(const Nf4Weight& w, int64_t i) {
  return nf4_packed_code(w.codes, i);  // rows are contiguous: the flat index works across rows
}

// Random weights with block scales spread over 2^±4 (so double quantization has work to do), one all-zero
// block and one outlier. 150 × 128 = 300 blocks: a full group of 256 and a partial one of 44.
std::vector<float> test_weights(int64_t rows, int64_t cols, uint32_t seed) {
  std::vector<float> w = test::randn(size_t(rows * cols), seed);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> lg(-4.0f, 4.0f);
  for (size_t b = 0; b < w.size() / 64; ++b) {
    const float s = std::exp2(lg(rng));
    for (size_t i = 0; i < 64; ++i) w[b * 64 + i] *= s;
  }
  std::fill(w.begin() + 64, w.begin() + 128, 0.0f);
  w[300] = 40.0f;
  return w;
}

TEST(Nf4Quant, CodesAreTheNearestNf4ValuesOfEachScaledBlock) {
  const int64_t rows = 150, cols = 128;
  const std::vector<float> w = test_weights(rows, cols, 1);
  Nf4Options o;
  o.double_quant = false;
  auto q = quantize_nf4(w.data(), rows, cols, o);
  ASSERT_FALSE(q->double_quant());
  const std::vector<float> deq = dequantize(*q);
  for (int64_t b = 0; b < rows * cols / 64; ++b) {
    float amax = 0;
    for (int i = 0; i < 64; ++i) amax = std::max(amax, std::fabs(w[size_t(b * 64 + i)]));
    ASSERT_EQ(q->absmax[b], amax) << b;
    const float r = 1.0f / amax;
    for (int i = 0; i < 64; ++i) {
      const int64_t k = b * 64 + i;
      const float x = w[size_t(k)] * r;
      int above = 0;  // dQuantizeNF4: the thresholds x exceeds
      for (float t : kNf4Thresholds) above += x > t;
      if (amax == 0) above = 0;  // 0·∞ = NaN: code 0
      ASSERT_EQ(code_at(*q, k), above) << k;
      ASSERT_EQ(deq[size_t(k)], kNf4Values[above] * amax);
      // Nearest value: the error is at most half the widest gap (0.1519·2 between −1 and −0.696) of the
      // block.
      ASSERT_LE(std::fabs(w[size_t(k)] - deq[size_t(k)]), 0.152f * amax + 1e-6f * amax) << k;
    }
  }
  // The all-zero block (block 1): code 0 everywhere (both nibbles), dequantized to (−)0.
  for (int64_t k = 64; k < 128; ++k) EXPECT_EQ(deq[size_t(k)], 0.0f);
  EXPECT_EQ(q->codes[32], 0);
}

TEST(Nf4Quant, DoubleQuantizationOnlyChangesTheStoredScales) {
  const int64_t rows = 150, cols = 128, nb = 300;
  const std::vector<float> w = test_weights(rows, cols, 2);
  Nf4Options plain;
  plain.double_quant = false;
  auto p = quantize_nf4(w.data(), rows, cols, plain);
  auto q = quantize_nf4(w.data(), rows, cols, Nf4Options{});
  ASSERT_TRUE(q->double_quant());
  EXPECT_EQ(sha256_hex(p->codes, size_t(rows * cols / 2)), sha256_hex(q->codes, size_t(rows * cols / 2)));
  double sum = 0;
  for (int64_t b = 0; b < nb; ++b) sum += p->absmax[b];
  EXPECT_EQ(q->absmax_offset, float(sum / nb));  // the mean, rounded once
  ASSERT_EQ(q->nsuper(), 2);
  for (int64_t s = 0; s < 2; ++s) {
    const int64_t b0 = s * 256, b1 = std::min<int64_t>(nb, b0 + 256);  // the second group has 44 blocks
    float a2 = 0;
    for (int64_t b = b0; b < b1; ++b) a2 = std::max(a2, std::fabs(p->absmax[b] - q->absmax_offset));
    EXPECT_EQ(q->absmax2[s], a2) << s;
    for (int64_t b = b0; b < b1; ++b) {
      ASSERT_EQ(q->absmax_q[b], dynamic_map_code((p->absmax[b] - q->absmax_offset) * (1.0f / a2))) << b;
      // 8 bits of the dynamic map: within half its widest gap (0.00703, next to ±1) of A2.
      ASSERT_LE(std::fabs(q->block_absmax(b) - p->absmax[b]), 0.00704f * a2 + 1e-6f * p->absmax[b]) << b;
    }
  }
  // The weights are NF4[q]·Â: the same codes with the double-quantized scale.
  const std::vector<float> deq = dequantize(*q);
  for (int64_t k = 0; k < rows * cols; ++k)
    ASSERT_EQ(deq[size_t(k)], kNf4Values[code_at(*q, k)] * q->block_absmax(k / 64)) << k;
}

TEST(Nf4Quant, RejectsShapesAndValuesItCannotStore) {
  std::vector<float> w(2 * 96, 0.5f);
  auto error = [&](int64_t rows, int64_t cols) {
    try {
      quantize_nf4(w.data(), rows, cols, Nf4Options{});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error(2, 96),
            "nf4: in_features 96 is not a multiple of 64 (NF4 quantizes blocks of 64 weights within a row)");
  w[70] = NAN;
  EXPECT_EQ(error(3, 64), "nf4: weight [1, 6] = nan is not finite");
}

TEST(Nf4Icq, EntropyKeyIsExact) {
  const int64_t unit = int64_t(1) << 40;
  int flat[16], one[16] = {64}, a[16] = {}, b[16] = {};
  std::fill(flat, flat + 16, 4);
  EXPECT_EQ(icq_entropy_key(flat), 16 * 4 * 2 * unit);  // H = 4 bits, the maximum
  EXPECT_EQ(icq_entropy_key(one), 64 * 6 * unit);       // H = 0
  // Equal entropies are equal keys: a permutation, and {4,1,1,1,1} vs {2,2,2,2} (both Σ c·log2 c = 8).
  int perm[16];
  std::copy(flat, flat + 16, perm);
  perm[0] = 7, perm[1] = 1, perm[5] = 3, perm[9] = 5;
  int perm2[16];
  std::copy(perm, perm + 16, perm2);
  std::swap(perm2[0], perm2[15]), std::swap(perm2[5], perm2[9]);
  EXPECT_EQ(icq_entropy_key(perm), icq_entropy_key(perm2));
  a[0] = 4, a[1] = a[2] = a[3] = a[4] = 1, a[5] = 56;
  b[0] = b[1] = b[2] = b[3] = 2, b[5] = 56;
  EXPECT_EQ(icq_entropy_key(a), icq_entropy_key(b));
  // ... and 6 + 12·log2 3 twice: {6,3,3,1,1,1,1,1,1} and {3,3,3,3,2,2,2}, each with 46 more in one code.
  int c[16] = {6, 3, 3, 1, 1, 1, 1, 1, 1, 46}, d[16] = {3, 3, 3, 3, 2, 2, 2, 46};
  EXPECT_EQ(icq_entropy_key(c), icq_entropy_key(d));
  // Otherwise the order is the entropy's.
  std::mt19937 rng(3);
  for (int t = 0; t < 20000; ++t) {
    int h[2][16] = {};
    for (auto& hist : h)
      for (int i = 0; i < 64; ++i) ++hist[rng() % (1 + rng() % 16)];
    double H[2];
    for (int j = 0; j < 2; ++j) {
      H[j] = 0;
      for (int k = 0; k < 16; ++k)
        if (h[j][k]) H[j] -= h[j][k] / 64.0 * std::log2(h[j][k] / 64.0);
    }
    if (std::fabs(H[0] - H[1]) > 1e-9) ASSERT_EQ(H[0] > H[1], icq_entropy_key(h[0]) < icq_entropy_key(h[1]));
  }
}

// The candidate shifts of IR-QLoRA's search: np.linspace(−λσ, λσ, 2n + 1) in double, each rounded to f32.
std::vector<float> factors(double lambda, int n) {
  const double sigma = 0.5410872368978237, hi = lambda * sigma, step = 2 * hi / (2 * n);
  std::vector<float> f;
  for (int k = 0; k <= 2 * n; ++k) f.push_back(float(k == 2 * n ? hi : k * step - hi));
  return f;
}

TEST(Nf4Icq, TiedCandidatesKeepTheFirst) {
  // 32 × −1 and 32 × +1: τ0 = −1 (the lower median), A = 2. Every shift leaves −1 near code 7 (±0.057 of the
  // block's scale: codes 6, 7 or 8) and +1 at code 15: 32/32 in two codes, H = 1 for all 201 candidates.
  std::vector<float> w(64);
  for (int i = 0; i < 64; ++i) w[size_t(i)] = i % 2 ? 1.0f : -1.0f;
  const IcqChoice c = icq_search(w.data(), 64, 0.1, 100);
  EXPECT_EQ(c.index[0], 0);
  const float f0 = factors(0.1, 100)[0];
  EXPECT_EQ(c.tau[0], rounded_product(f0, 2.0f) + -1.0f);
}

TEST(Nf4Icq, ChoosesTheFirstShiftOfMaximalEntropy) {
  // Exhaustively, in double: each candidate's codes and −Σ p·log2 p.
  std::mt19937 rng(4);
  std::exponential_distribution<float> ex(1.0f);
  const int nblocks = 200, n = 100;
  std::vector<float> w(size_t(nblocks * 64));
  for (size_t i = 0; i < w.size(); ++i)
    w[i] = (rng() % 2 ? 1 : -1) * ex(rng) + (i / 64 % 3 == 0 ? 0.7f : 0.0f);
  const IcqChoice c = icq_search(w.data(), int64_t(w.size()), 0.1, n);
  const std::vector<float> f = factors(0.1, n);
  int away_from_median = 0;
  for (int b = 0; b < nblocks; ++b) {
    const float* x = &w[size_t(b * 64)];
    std::vector<float> s(x, x + 64);
    std::sort(s.begin(), s.end());
    const float tau0 = s[31];
    float a = 0;
    for (int i = 0; i < 64; ++i) a = std::max(a, std::fabs(x[i] - tau0));
    std::vector<double> H;
    std::vector<float> taus;
    for (float fk : f) {
      const float tau = rounded_product(fk, a) + tau0;
      float amax = 0;
      for (int i = 0; i < 64; ++i) amax = std::max(amax, std::fabs(x[i] - tau));
      int hist[16] = {};
      for (int i = 0; i < 64; ++i) ++hist[nf4_code((x[i] - tau) * (1.0f / amax))];
      double h = 0;
      for (int k : hist)
        if (k) h -= k / 64.0 * std::log2(k / 64.0);
      H.push_back(h);
      taus.push_back(tau);
    }
    const int k = c.index[size_t(b)];
    EXPECT_EQ(c.tau[size_t(b)], taus[size_t(k)]);
    const double best = *std::max_element(H.begin(), H.end());
    ASSERT_NEAR(H[size_t(k)], best, 1e-12) << b;
    for (int j = 0; j < k; ++j) ASSERT_LT(H[size_t(j)], best - 1e-12) << b << " " << j;
    away_from_median += k != n;
  }
  EXPECT_GT(away_from_median, nblocks / 2);  // the search does move τ off the median
}

TEST(Nf4Icq, StoresTheChosenCodesAndAn8BitTau) {
  const int64_t rows = 150, cols = 128, nb = 300;
  const std::vector<float> w = test_weights(rows, cols, 5);
  Nf4Options o;
  o.icq = true;
  auto q = quantize_nf4(w.data(), rows, cols, o);
  ASSERT_TRUE(q->icq());
  const IcqChoice c = icq_search(w.data(), rows * cols, 0.1, 100);
  // The codes are those of w − τ with the chosen f32 τ (not the stored 8-bit one), as upstream's search does.
  std::vector<float> shifted(w.size());
  for (size_t i = 0; i < w.size(); ++i) shifted[i] = w[i] - c.tau[i / 64];
  Nf4Options plain;
  auto p = quantize_nf4(shifted.data(), rows, cols, plain);
  EXPECT_EQ(sha256_hex(p->codes, size_t(rows * cols / 2)), sha256_hex(q->codes, size_t(rows * cols / 2)));
  for (int64_t s = 0; s < 2; ++s) {
    float t2 = 0;
    for (int64_t b = s * 256; b < std::min<int64_t>(nb, s * 256 + 256); ++b)
      t2 = std::max(t2, std::fabs(c.tau[size_t(b)]));
    EXPECT_EQ(q->tau2[s], t2);
    for (int64_t b = s * 256; b < std::min<int64_t>(nb, s * 256 + 256); ++b) {
      ASSERT_EQ(q->tau_q[b], dynamic_map_nearest(c.tau[size_t(b)] / t2)) << b;
      ASSERT_LE(std::fabs(q->block_tau(b) - c.tau[size_t(b)]), 0.00704f * t2) << b;
    }
  }
  // Ŵ = NF4[q]·Â + τ̂.
  const std::vector<float> deq = dequantize(*q);
  for (int64_t k = 0; k < rows * cols; ++k)
    ASSERT_EQ(deq[size_t(k)], kNf4Values[code_at(*q, k)] * q->block_absmax(k / 64) + q->block_tau(k / 64));
}

TEST(Nf4Method, RegistryEntryAndItsFixedBlock) {
  const Method* m = find_method("nf4");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->label, "NormalFloat");
  EXPECT_EQ(m->format, "nf4");
  EXPECT_FALSE(m->needs_calibration);
  EXPECT_EQ(m->min_bits, 4);
  EXPECT_EQ(m->max_bits, 4);
  EXPECT_EQ(m->fixed_group, 64);
  const Json opts = resolve_method_options(*m, Json::object());
  EXPECT_EQ(opts, (Json{{"double_quant", true}, {"icq", false}, {"icq_lambda", 0.1}, {"icq_n", 100}}));
  auto error = [](QuantConfig c) {
    try {
      validate_quant_options(c);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  QuantConfig c;
  c.method = "nf4";
  c.group = 64;
  EXPECT_EQ(error(c), "");
  c.group = 128;
  EXPECT_EQ(
      error(c),
      "--group 128: nf4 quantizes fixed blocks of 64 consecutive weights (leave --group out, or pass 64)");
  c.group = 64;
  c.wbits = 3;
  EXPECT_EQ(error(c), "--wbits 3 is not supported by nf4 (supported: 4 bits)");
  c.wbits = 4;
  c.options["icq_n"] = 0;
  EXPECT_EQ(error(c),
            "--icq-n 0: nf4 takes a value in [1, 10000] (ICQ tries 2n+1 shifts per block (IR-QLoRA tau_n))");
  // A study row without a group gets the method's block (other methods keep 128); another group is refused.
  const std::string head = "models = [\"m\"]\n[perplexity]\ndatasets = [\"wikitext2\"]\n[[rows]]\n";
  const StudySpec s = parse_study(head + "method = [\"nf4\", \"rtn\"]\nwbits = 4\n", "t.toml");
  ASSERT_EQ(s.rows.size(), 2u);
  EXPECT_EQ(s.rows[0].quant.group, 64);
  EXPECT_EQ(s.rows[0].label(), "nf4 w4 a16 g64");
  EXPECT_EQ(s.rows[1].quant.group, 128);
  try {
    parse_study(head + "method = \"nf4\"\nwbits = 4\ngroup = 128\n", "t.toml");
    ADD_FAILURE() << "group 128 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(
        std::string(e.what()),
        "t.toml: rows[0]: --group 128: nf4 quantizes fixed blocks of 64 consecutive weights (leave --group "
        "out, or pass 64)");
  }
}

// ---- testbed-25m ----

std::string sha(const void* p, size_t n) {
  return sha256_hex(p, n);
}

std::string testbed_or_skip() {
  const std::string mp = test::model_path("testbed-25m");
  return std::filesystem::exists(mp + "/config.json") ? mp : std::string();
}

// Every linear of testbed-25m (8 layers × 7) against tools/ref_nf4.py: NF4 codes, the double-quantized absmax
// (codes, A2, offset), and ICQ's chosen candidate per block, its codes and its 8-bit τ, all bit for bit.
TEST(Nf4Testbed, EveryLinearMatchesTheNumpyReference) {
  const std::string mp = testbed_or_skip();
  if (mp.empty()) GTEST_SKIP() << "testbed-25m not found (LOWBIT_MODELS)";
  const Json ref = parse_json_file(
      (std::filesystem::path(__FILE__).parent_path() / "../../formats/nf4_ref.json").string());
  const Json& lin = ref.at("linears");
  ASSERT_EQ(lin.size(), 56u);
  LlamaModel model(load_checkpoint(mp));
  int checked = 0;
  for (int l = 0; l < model.config().n_layer; ++l)
    for (LinearKind k : kAllLinears) {
      const std::string name = fmt::format("model.layers.{}.{}", l, linear_name(k));
      SCOPED_TRACE(name);
      const Json& r = lin.at(name);
      const Linear& L = model.linear(l, k);
      const std::vector<float> w = linear_to_f32(L);
      const int64_t rows = L.rows(), cols = L.cols(), n = rows * cols;
      ASSERT_EQ(r.at("shape"), (Json{rows, cols}));
      auto q = quantize_nf4(w.data(), rows, cols, Nf4Options{});
      EXPECT_EQ(sha(q->codes, size_t(n / 2)), r.at("codes_sha256"));
      EXPECT_EQ(sha(q->absmax_q, size_t(q->nblocks())), r.at("absmax_q_sha256"));
      EXPECT_EQ(sha(q->absmax2, size_t(q->nsuper()) * 4), r.at("absmax2_sha256"));
      EXPECT_EQ(q->absmax_offset, r.at("absmax_offset").get<float>());
      // ICQ: the choice per block, then the weight it stores.
      const IcqChoice c = icq_search(w.data(), n, 0.1, 100);
      EXPECT_EQ(sha(c.index.data(), c.index.size() * 4), r.at("icq_index_sha256"));
      Nf4Options o;
      o.icq = true;
      auto qi = quantize_nf4(w.data(), rows, cols, o);
      EXPECT_EQ(sha(qi->codes, size_t(n / 2)), r.at("icq_codes_sha256"));
      EXPECT_EQ(sha(qi->tau_q, size_t(qi->nblocks())), r.at("icq_tau_q_sha256"));
      EXPECT_EQ(sha(qi->tau2, size_t(qi->nsuper()) * 4), r.at("icq_tau2_sha256"));
      ++checked;
    }
  EXPECT_EQ(checked, 56);
}

// Quantized in memory, saved, reloaded: the same tensors and the same perplexity, bit for bit (with ICQ, so
// the optional τ tensors travel too).
TEST(Nf4Method, SaveReloadReproducesPerplexityExactly) {
  const std::string mp = testbed_or_skip();
  if (mp.empty()) GTEST_SKIP() << "testbed-25m not found (LOWBIT_MODELS)";
  LlamaModel model(load_checkpoint(mp));
  auto tok = load_tokenizer_for_model(mp);
  QuantConfig qc;
  qc.method = "nf4";
  qc.wbits = 4;
  qc.group = 64;
  qc.options["icq"] = true;
  qc.quiet = true;
  const QuantReport rep = quantize_model(model, *tok, qc);
  // Every linear stores 4 + (8 + 8)/64 + (32 + 32)/(64·256) bits per weight, plus 32 for the offset.
  double want = 0;
  for (const LinearReport& r : rep.linears) {
    const double n = double(r.rows * r.cols), nb = n / 64, ns = std::ceil(nb / 256);
    want += 4 * n + 16 * nb + 64 * ns + 32;
  }
  EXPECT_NEAR(rep.bits_per_weight, want / double(rep.n_weights), 1e-12);
  const std::string dir = test::temp_dir("nf4ckpt");
  save_model(model, dir, quantization_config_json(qc, rep, mp));
  LlamaModel reloaded(load_checkpoint(dir));
  EXPECT_EQ(reloaded.checkpoint().config.quantization_config["format"], "nf4");
  for (int l = 0; l < model.config().n_layer; ++l)
    for (LinearKind k : kAllLinears) {
      ASSERT_TRUE(reloaded.linear(l, k).packed);
      const PackedWeight& a = *model.linear(l, k).packed;
      const PackedWeight& b = *reloaded.linear(l, k).packed;
      ASSERT_EQ(&b.format(), &nf4_format());
      const auto ta = nf4_format().tensors(a), tb = nf4_format().tensors(b);
      ASSERT_EQ(ta.size(), 6u);
      ASSERT_EQ(tb.size(), 6u);
      for (size_t i = 0; i < ta.size(); ++i) {
        ASSERT_EQ(ta[i].suffix, tb[i].suffix);
        ASSERT_EQ(sha(ta[i].view.data, ta[i].view.nbytes), sha(tb[i].view.data, tb[i].view.nbytes))
            << ta[i].suffix;
      }
    }
  auto ids = tok->encode_with_bos(build_eval_text("wikitext2", test::paths()).text);
  PplOptions opt;
  opt.seqlen = 256;
  opt.max_windows = 2;
  opt.quiet = true;
  LlamaModel fp(load_checkpoint(mp));
  const double a = perplexity(model, ids, opt).ppl, b = perplexity(reloaded, ids, opt).ppl;
  const double f = perplexity(fp, ids, opt).ppl;
  EXPECT_EQ(a, b);
  std::printf("  testbed-25m wikitext2 (2 × 256): fp %.4f, nf4+icq %.4f\n", f, a);
  EXPECT_LT(a, f * 1.15);  // 4-bit NF4 stays close to FP
}

// `lowbit quantize --method nf4` (no --group: the method's block) + `lowbit ppl` on its checkpoint.
TEST(Nf4Method, CliQuantizeThenPpl) {
  if (testbed_or_skip().empty()) GTEST_SKIP() << "testbed-25m not found (LOWBIT_MODELS)";
  const std::string dir = test::temp_dir("nf4cli");
  auto r = test::run_cli("quantize testbed-25m --method nf4 --wbits 4 --out " + dir + "/m --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json s = parse_json_text(r.out, "quantize output");
  const Json& qc = s.at("quantization_config");
  EXPECT_EQ(qc.at("quant_method"), "nf4");
  EXPECT_EQ(qc.at("format"), "nf4");
  EXPECT_EQ(qc.at("group_size"), 64);
  EXPECT_EQ(qc.at("double_quant"), true);
  EXPECT_EQ(qc.at("icq"), false);
  // testbed-25m's linears are whole groups of 256 blocks: 4 + 8/64 + 32/16384 plus the offset's 32 bits.
  EXPECT_GT(s.at("bits_per_weight").get<double>(), 4 + 0.125 + 32.0 / 16384);
  EXPECT_LT(s.at("bits_per_weight").get<double>(), 4 + 0.125 + 32.0 / 16384 + 32.0 / 49152);
  r = test::run_cli("ppl " + dir +
                    "/m -d wikitext2 --seqlen 256 --max-windows 2 --kld-base testbed-25m --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json p = parse_json_text(r.out, "ppl output");
  EXPECT_GT(p[0]["kld"]["mean"].get<double>(), 0.0);
  EXPECT_GT(p[0]["kld"]["top1_agreement"].get<double>(), 0.7);
  r = test::run_cli("quantize testbed-25m --method nf4 --wbits 4 --group 128 --out " + dir + "/bad");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--group 128: nf4 quantizes fixed blocks of 64"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lowbit
