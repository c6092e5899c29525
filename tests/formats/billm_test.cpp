// The BiLLM format (formats/billm.h): the levels and the reference dequantizer against the definition
// (including the order of the f32 additions), exact bits per weight, the checkpoint tensors read back
// through from_tensors bit for bit (also misaligned), and malformed tensors as one-line errors.
#include "formats/billm.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/random_billm.h"
#include "kernels/format_kernels.h"
#include "test_util.h"

namespace lowbit {
namespace {

using Stored = std::map<std::string, TensorView>;

Stored stored_tensors(const PackedWeight& w) {
  Stored out;
  for (FormatTensor& t : billm_format().tensors(w)) out[t.suffix] = t.view;
  return out;
}

std::shared_ptr<PackedWeight> load(const Stored& s, int64_t rows, int64_t cols) {
  auto get = [&](std::string_view k) -> const TensorView* {
    auto it = s.find(std::string(k));
    return it == s.end() ? nullptr : &it->second;
  };
  return billm_format().from_tensors(get, rows, cols, "f.safetensors: L");
}

std::vector<float> dequantized(const PackedWeight& w) {
  std::vector<float> out(size_t(w.rows * w.cols));
  w.format().dequantize_ref(w, 0, w.rows, out.data());
  return out;
}

float fp16(float v) {
  return f16_to_f32(f32_to_f16(v));
}

// The definition, written out again: the weight of (salient, a, b) from the 7 parameters as f32.
float definition(const float* p, bool salient, bool a, bool b) {
  if (!salient) return b ? p[2] + (a ? p[3] : -p[3]) : p[0] + (a ? p[1] : -p[1]);
  const float first = p[4] + (a ? p[5] : -p[5]);
  return first + (b ? p[6] : -p[6]);
}

TEST(BillmFormat, IsRegisteredWithItsKernels) {
  ASSERT_EQ(find_format("billm"), &billm_format());
  EXPECT_EQ(billm_format().marker_suffix, "bl_signs");
  EXPECT_NO_THROW(format_kernels(billm_format()));
}

TEST(BillmFormat, LevelsAreTheDefinitionInItsOrder) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int trial = 0; trial < 200; ++trial) {
    uint16_t h[7];
    float p[7];
    for (int i = 0; i < 7; ++i) {
      h[i] = f32_to_f16(std::ldexp(nd(rng), int(rng() % 21) - 10));
      p[i] = f16_to_f32(h[i]);
    }
    float lv[8];
    billm_levels(h, lv);
    for (int code = 0; code < 8; ++code) {
      const float want = definition(p, code & 4, code & 1, code & 2);
      ASSERT_EQ(std::memcmp(&lv[code], &want, 4), 0) << trial << " " << code;
      const float one = billm_level(h, code & 4, code & 1, code & 2);
      ASSERT_EQ(std::memcmp(&one, &want, 4), 0) << trial << " " << code;
    }
  }
  // The salient level is (μs ± αs1) ± αs2, not μs + (±αs1 ± αs2): with μs = 2048 and αs1 = αs2 = 2⁻¹³ (half
  // an f32 ulp of 2048) each addition rounds back to 2048, while 2048 + 2⁻¹² is representable.
  const uint16_t h[7] = {
      0, 0, 0, 0, f32_to_f16(2048.0f), f32_to_f16(std::ldexp(1.0f, -13)), f32_to_f16(std::ldexp(1.0f, -13))};
  float lv[8];
  billm_levels(h, lv);
  EXPECT_EQ(lv[7], 2048.0f);
  EXPECT_NE(2048.0f + std::ldexp(1.0f, -12), 2048.0f);
}

TEST(BillmFormat, ReferenceIsTheDefinitionInF32) {
  std::mt19937 rng(2);
  for (bool mixed : {false, true}) {
    const test::RandomBillm p = test::random_billm(5, 384, 64, 0.2, rng, mixed);
    const std::vector<float> out = dequantized(*p.w);
    const int64_t G = 384 / 64;
    for (int64_t r = 0; r < 5; ++r)
      for (int64_t c = 0; c < 384; ++c) {
        const size_t i = size_t(r * 384 + c);
        float par[7];
        for (int k = 0; k < 7; ++k) par[k] = fp16(p.par[size_t((r * G + c / 64) * 7 + k)]);
        const float want = definition(par, p.salient[size_t(c)], p.a[i], p.b[i]);
        ASSERT_EQ(std::memcmp(&out[i], &want, 4), 0) << r << " " << c;
      }
    // Rows from the middle are the same rows.
    std::vector<float> mid(2 * 384);
    billm_dequantize_rows_scalar(*p.w, 2, 2, mid.data());
    EXPECT_EQ(std::memcmp(mid.data(), out.data() + 2 * 384, mid.size() * 4), 0);
  }
}

TEST(BillmFormat, BitsPerWeightCountEveryStoredByte) {
  std::mt19937 rng(3);
  for (int64_t rows : {1, 6, 33})
    for (int64_t gs : {32, 64, 128, 256, 512}) {
      const test::RandomBillm p = test::random_billm(rows, 512, gs, 0.1, rng);
      const Stored s = stored_tensors(*p.w);
      EXPECT_EQ(s.size(), 4u);
      double bytes = 0;
      for (const auto& [suffix, t] : s) bytes += double(t.nbytes);
      const double n = double(rows) * 512, G = 512.0 / double(gs);
      EXPECT_DOUBLE_EQ(billm_format().bits_per_weight(*p.w), bytes * 8 / n) << rows << " g" << gs;
      EXPECT_NEAR(p.w->bits_per_weight(), (2 * n + 112 * double(rows) * G + 512) / n, 1e-12);
    }
  // g128: 2 planes + 7·16/128 = 0.875 + one bit per column (1/rows per weight).
  std::mt19937 r2(4);
  EXPECT_DOUBLE_EQ(test::random_billm(4, 1024, 128, 0.1, r2).w->bits_per_weight(), 2.875 + 0.25);
}

TEST(BillmFormat, TensorsReadBackBitwiseAlsoMisaligned) {
  std::mt19937 rng(5);
  for (int64_t gs : {32, 128})
    for (bool misalign : {false, true}) {
      const test::RandomBillm p = test::random_billm(9, 256, gs, 0.1, rng, true);
      Stored s = stored_tensors(*p.w);
      std::vector<std::vector<uint8_t>> odd;
      if (misalign)
        for (auto& [k, t] : s) {
          odd.emplace_back(t.nbytes + 1);
          std::memcpy(odd.back().data() + 1, t.data, t.nbytes);
          t.data = odd.back().data() + 1;
        }
      auto back = load(s, 9, 256);
      const BillmWeight& b = as_billm(*back);
      EXPECT_EQ(b.group_size, gs);
      EXPECT_EQ(b.n_groups(), 256 / gs);
      // Views where aligned; the misaligned fp16 parameters are a copy the weight keeps.
      EXPECT_EQ(static_cast<const void*>(b.signs), s.at("bl_signs").data);
      EXPECT_EQ(static_cast<const void*>(b.par) == s.at("bl_par").data, !misalign);
      const std::vector<float> x = dequantized(*p.w), y = dequantized(*back);
      EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * 4), 0) << gs << misalign;
      // Saved again, the same bytes.
      const Stored again = stored_tensors(*back);
      ASSERT_EQ(again.size(), s.size());
      for (const auto& [k, t] : s) {
        EXPECT_EQ(again.at(k).dtype, t.dtype) << k;
        EXPECT_EQ(again.at(k).shape, t.shape) << k;
        ASSERT_EQ(again.at(k).nbytes, t.nbytes) << k;
        EXPECT_EQ(std::memcmp(again.at(k).data, t.data, t.nbytes), 0) << k;
      }
    }
}

TEST(BillmFormat, StoresTheBitsGiven) {
  // Planes LSB-first per row, the salient columns once, the parameters (rows, G·7) block-major.
  std::vector<uint8_t> sal(64, 0), a(2 * 64, 0), b(2 * 64, 0);
  sal[3] = sal[40] = 1;
  a[1] = a[64 + 63] = 1;
  b[8] = 1;
  std::vector<float> par(2 * 2 * 7);
  for (size_t i = 0; i < par.size(); ++i) par[i] = float(i);
  auto w = make_billm(2, 64, 32, sal.data(), a.data(), b.data(), par.data());
  const Stored s = stored_tensors(*w);
  auto bytes = [&](const char* k) {
    const auto* p = static_cast<const uint8_t*>(s.at(k).data);
    return std::vector<uint8_t>(p, p + s.at(k).nbytes);
  };
  EXPECT_EQ(bytes("bl_salient"), (std::vector<uint8_t>{0x08, 0, 0, 0, 0, 0x01, 0, 0}));
  std::vector<uint8_t> want_a(16, 0), want_b(16, 0);
  want_a[0] = 0x02, want_a[15] = 0x80, want_b[1] = 0x01;
  EXPECT_EQ(bytes("bl_signs"), want_a);
  EXPECT_EQ(bytes("bl_plane2"), want_b);
  EXPECT_EQ(s.at("bl_par").shape, (std::vector<int64_t>{2, 14}));
  EXPECT_EQ(f16_to_f32(w->params(1, 1)[2]), 23.0f);  // row 1, block 1, μ2
}

TEST(BillmFormat, MalformedTensorsGiveOneLineErrors) {
  std::mt19937 rng(6);
  const test::RandomBillm p = test::random_billm(4, 128, 64, 0.1, rng);
  const Stored ok = stored_tensors(*p.w);
  auto error = [&](const Stored& s, int64_t rows = 4, int64_t cols = 128) {
    const std::string e = test::error_of([&] { load(s, rows, cols); });
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    return e;
  };
  EXPECT_EQ(error(ok), "(no error)");
  for (const char* k : {"bl_signs", "bl_plane2", "bl_salient", "bl_par"}) {
    Stored s = ok;
    s.erase(k);
    EXPECT_EQ(error(s),
              fmt::format("f.safetensors: L.{}: missing (the billm format needs bl_signs, bl_plane2, "
                          "bl_salient and bl_par)",
                          k));
  }
  // Wrong dtype or shape of each tensor.
  Stored s = ok;
  s["bl_signs"].dtype = DType::I8;
  EXPECT_EQ(error(s), "f.safetensors: L.bl_signs is I8 (4, 16), expected U8 (4, 16)");
  EXPECT_EQ(error(ok, 5), "f.safetensors: L.bl_signs is U8 (4, 16), expected U8 (5, 16)");
  s = ok;
  s["bl_plane2"].shape = {4, 8};
  EXPECT_EQ(error(s), "f.safetensors: L.bl_plane2 is U8 (4, 8), expected U8 (4, 16)");
  s = ok;
  s["bl_salient"].shape = {1, 16};
  EXPECT_EQ(error(s), "f.safetensors: L.bl_salient is U8 (1, 16), expected U8 (16)");
  s = ok;
  s["bl_salient"].dtype = DType::BOOL;
  EXPECT_EQ(error(s), "f.safetensors: L.bl_salient is BOOL (16), expected U8 (16)");
  s = ok;
  s["bl_par"].dtype = DType::BF16;
  EXPECT_EQ(error(s), "f.safetensors: L.bl_par is BF16 (4, 14), expected F16 (4, 14)");
  s = ok;
  s["bl_par"].shape = {8, 7};  // as many values, but the rows disagree
  EXPECT_EQ(error(s), "f.safetensors: L.bl_par is F16 (8, 7), expected F16 (4, 7)");
  s = ok;
  s["bl_par"].shape = {56};
  EXPECT_EQ(
      error(s),
      "f.safetensors: L.bl_par has shape (56), not (rows, 7·blocks) with the blocks dividing 128 columns");
  s = ok;
  s["bl_par"].shape = {4, 13};  // not a multiple of 7
  EXPECT_EQ(error(s),
            "f.safetensors: L.bl_par has shape (4, 13), not (rows, 7·blocks) with the blocks dividing 128 "
            "columns");
  // Group size rules: 3 blocks do not divide 128 columns; 8 blocks of 16 columns; 2 blocks of 48 columns.
  s = ok;
  s["bl_par"].shape = {4, 21};
  EXPECT_EQ(error(s),
            "f.safetensors: L.bl_par has shape (4, 21), not (rows, 7·blocks) with the blocks dividing 128 "
            "columns");
  s = ok;
  s["bl_par"].shape = {1, 56};
  EXPECT_EQ(error(s, 1),
            "f.safetensors: L.bl_par: billm group size 16 must be a multiple of 32 dividing the 128 input "
            "columns");
  EXPECT_EQ(error(ok, 4, 96),
            "f.safetensors: L.bl_par: billm group size 48 must be a multiple of 32 dividing the 96 input "
            "columns");
  EXPECT_EQ(error(ok, 4, 100),
            "f.safetensors: L: billm needs a shape (rows, cols) with cols a multiple of 32, not (4, 100)");
  // A parameter that is not finite.
  std::vector<uint16_t> par(p.w->par, p.w->par + 4 * 14);
  s = ok;
  s["bl_par"].data = par.data();
  par[14 + 7 + 5] = 0x7C00;  // row 1, block 1, αs1 = +∞
  EXPECT_EQ(error(s),
            "f.safetensors: L.bl_par: alpha_s1 of row 1 block 1 is inf (the parameters must be finite)");
  par[14 + 7 + 5] = f32_to_f16(1.0f);
  par[3 * 14 + 0] = 0x7E00;  // row 3, block 0, μ1 = NaN
  EXPECT_EQ(error(s), "f.safetensors: L.bl_par: mu1 of row 3 block 0 is nan (the parameters must be finite)");
  par[3 * 14 + 0] = 0xFC00;  // −∞
  EXPECT_EQ(error(s),
            "f.safetensors: L.bl_par: mu1 of row 3 block 0 is -inf (the parameters must be finite)");
  par[3 * 14 + 0] = 0x7BFF;  // 65504, the largest finite fp16
  EXPECT_EQ(error(s), "(no error)");
}

TEST(BillmFormat, MakeBillmRejectsWhatCannotBeStored) {
  std::vector<uint8_t> sal(128, 0), bits(2 * 128, 0);
  std::vector<float> par(2 * 2 * 7, 0.5f);
  EXPECT_EQ(test::error_of([&] { make_billm(2, 128, 64, sal.data(), bits.data(), bits.data(), par.data()); }),
            "(no error)");
  EXPECT_EQ(test::error_of([&] { make_billm(2, 128, 48, sal.data(), bits.data(), bits.data(), par.data()); }),
            "make_billm: billm group size 48 must be a multiple of 32 dividing the 128 input columns");
  EXPECT_EQ(test::error_of([&] { make_billm(2, 128, 96, sal.data(), bits.data(), bits.data(), par.data()); }),
            "make_billm: billm group size 96 must be a multiple of 32 dividing the 128 input columns");
  par[7 + 6] = 1e5f;  // row 0, block 1, αs2
  EXPECT_EQ(test::error_of([&] { make_billm(2, 128, 64, sal.data(), bits.data(), bits.data(), par.data()); }),
            "make_billm: alpha_s2 of row 0 block 1 is 100000, which overflows fp16");
  par[7 + 6] = 0.5f;
  par[14 + 2] = std::numeric_limits<float>::quiet_NaN();  // row 1, block 0, μ2
  EXPECT_EQ(test::error_of([&] { make_billm(2, 128, 64, sal.data(), bits.data(), bits.data(), par.data()); }),
            "make_billm: mu2 of row 1 block 0 is nan, not finite");
}

}  // namespace
}  // namespace lowbit
