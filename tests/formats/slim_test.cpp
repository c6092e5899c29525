// The SliM format (formats/slim.h): slim_value and the reference dequantizer against the definition computed
// independently (f32 rounding of the exact value, codes from the unpacked inputs), the byte layout, exact
// bits per weight, the checkpoint tensors read back through from_tensors bit for bit (also misaligned, also
// through a safetensors file, with and without 1-bit groups), and malformed tensors as one-line errors.
#include "formats/slim.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/random_slim.h"
#include "io/safetensors.h"
#include "kernels/format_kernels.h"
#include "test_util.h"

namespace lowbit {
namespace {

using Stored = std::map<std::string, TensorView>;

Stored stored_tensors(const PackedWeight& w) {
  Stored out;
  for (FormatTensor& t : slim_format().tensors(w)) out[t.suffix] = t.view;
  return out;
}

std::shared_ptr<PackedWeight> load(const Stored& s, int64_t rows, int64_t cols) {
  auto get = [&](std::string_view k) -> const TensorView* {
    auto it = s.find(std::string(k));
    return it == s.end() ? nullptr : &it->second;
  };
  return slim_format().from_tensors(get, rows, cols, "f.safetensors: L");
}

std::vector<float> dequantized(const PackedWeight& w) {
  std::vector<float> out(size_t(w.rows * w.cols));
  w.format().dequantize_ref(w, 0, w.rows, out.data());
  return out;
}

float fp16(float v) {
  return f16_to_f32(f32_to_f16(v));
}

// The definition, independently: the exact value of the weight, rounded once to f32. (μ ± α of two fp16
// values is exact in double; S·(q − Z) is exact in double and in f32.)
float definition(int bits, uint32_t code, float scale, uint32_t zero, float mean) {
  if (bits == 1) return float(double(mean) + (code ? double(scale) : -double(scale)));
  return float(double(scale) * (double(code) - double(zero)));
}

const std::vector<std::vector<int>> kPalettes = {
    {1, 2, 3}, {2, 3, 4}, {1}, {2, 3, 4, 5, 6, 7, 8}, {1, 2, 3, 4, 5, 6, 7, 8}};

TEST(SlimFormat, IsRegisteredWithItsKernels) {
  ASSERT_EQ(find_format("slim"), &slim_format());
  EXPECT_EQ(slim_format().marker_suffix, "sl_codes");
  EXPECT_NO_THROW(format_kernels(slim_format()));
}

TEST(SlimFormat, ValueIsTheDefinitionInItsOrder) {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 2000; ++trial) {
    const int bits = 1 + int(rng() % 8);
    const uint32_t code = rng() & ((1u << bits) - 1), zero = rng() & ((1u << bits) - 1);
    const float s = f16_to_f32(test::wide_random_scale(rng));
    const float m = fp16(std::ldexp(float(int(rng() % 2001) - 1000), int(rng() % 30) - 24));
    const float got = slim_value(bits, code, s, uint8_t(zero), m), want = definition(bits, code, s, zero, m);
    ASSERT_EQ(std::memcmp(&got, &want, 4), 0) << bits << " " << code << " " << s << " " << m;
  }
  // μ + α rounds once in f32: 2048 + 2⁻¹³ is 2048 (half an f32 ulp, ties to even), 2048 − 2⁻¹³ is not 2048.
  EXPECT_EQ(slim_value(1, 1, std::ldexp(1.0f, -13), 0, 2048.0f), 2048.0f);
  EXPECT_EQ(slim_value(1, 0, std::ldexp(1.0f, -13), 0, 2048.0f), 2048.0f - std::ldexp(1.0f, -13));
  // A ≥ 2-bit value ignores the mean; a 1-bit value ignores the zero-point.
  EXPECT_EQ(slim_value(3, 5, 0.5f, 2, 100.0f), 1.5f);
  EXPECT_EQ(slim_value(1, 1, 0.5f, 7, -1.0f), -0.5f);
}

TEST(SlimFormat, ReferenceIsTheDefinitionPerElement) {
  std::mt19937 rng(2);
  for (const auto& palette : kPalettes)
    for (int64_t gs : {8, 32, 128}) {
      const int64_t rows = 5, cols = 384, G = cols / gs;
      const test::RandomSlim p = test::random_slim(rows, cols, gs, palette, rng);
      const std::vector<float> out = dequantized(*p.w);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const size_t i = size_t(r * cols + c), rg = size_t(r * G + c / gs);
          const int b = p.bits[size_t(c / gs)];
          const float want = definition(b, p.codes[i], fp16(p.scales[rg]), p.zeros[rg], fp16(p.means[rg]));
          ASSERT_EQ(std::memcmp(&out[i], &want, 4), 0) << r << " " << c << " bits " << b;
        }
      // Rows from the middle are the same rows.
      std::vector<float> mid(2 * cols);
      slim_dequantize_rows_scalar(*p.w, 2, 2, mid.data());
      EXPECT_EQ(std::memcmp(mid.data(), out.data() + 2 * cols, mid.size() * 4), 0);
    }
}

TEST(SlimFormat, BitsPerWeightCountEveryStoredByte) {
  std::mt19937 rng(3);
  for (const auto& palette : kPalettes)
    for (int64_t rows : {1, 6, 33})
      for (int64_t gs : {8, 64, 128, 512}) {
        const test::RandomSlim p = test::random_slim(rows, 512, gs, palette, rng);
        const Stored s = stored_tensors(*p.w);
        EXPECT_EQ(s.size(), p.w->n_one_bit > 0 ? 5u : 4u);
        double bytes = 0;
        for (const auto& [suffix, t] : s) bytes += double(t.nbytes);
        const double n = double(rows) * 512, G = 512.0 / double(gs);
        EXPECT_DOUBLE_EQ(slim_format().bits_per_weight(*p.w), bytes * 8 / n) << rows << " g" << gs;
        double code_bits = 0, g1 = 0;
        for (uint8_t b : p.bits) code_bits += double(b) * double(gs), g1 += b == 1;
        EXPECT_EQ(p.w->n_one_bit, int64_t(g1));
        EXPECT_NEAR(p.w->bits_per_weight(),
                    (double(rows) * code_bits + 24 * double(rows) * G + 16 * double(rows) * g1 + 8 * G) / n,
                    1e-12);
        EXPECT_DOUBLE_EQ(p.w->mean_bits(), code_bits / 512);
      }
  // g128, groups of 1, 2, 2, 3 bits twice: the paper's 2 bits; stored 2 + (16 + 8)/128 + 16·2/(8·128) +
  // 64/4096.
  std::vector<uint8_t> bits = {1, 2, 2, 3, 3, 2, 2, 1}, codes(4 * 1024, 0), zeros(4 * 8, 0);
  std::vector<float> scales(4 * 8, 0.5f), means(4 * 8, 0.0f);
  auto w = make_slim(4, 1024, 128, bits.data(), codes.data(), scales.data(), zeros.data(), means.data());
  EXPECT_EQ(w->row_bytes(), 256u);
  EXPECT_DOUBLE_EQ(w->mean_bits(), 2.0);
  EXPECT_DOUBLE_EQ(w->bits_per_weight(), 9152.0 / 4096);
}

TEST(SlimFormat, StoresTheBitsGiven) {
  // cols 24 in groups of 8 with 1, 3 and 2 bits: row_bytes 1 + 3 + 2, each group LSB-first from its byte.
  const std::vector<uint8_t> bits = {1, 3, 2};
  std::vector<uint8_t> codes(2 * 24, 0);
  const uint8_t row0[24] = {1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7, 3, 0, 1, 2, 3, 0, 1, 2};
  std::memcpy(codes.data(), row0, 24);
  codes[24 + 15] = 7;                                     // row 1, the last code of the 3-bit group
  const std::vector<uint8_t> zeros = {0, 3, 2, 9, 7, 1};  // the 1-bit groups' 0 and 9 are not stored
  const std::vector<float> scales = {1, 2, 3, 4, 5, 6}, means = {0.5f, -1, -1, 0.25f, -1, -1};
  auto w = make_slim(2, 24, 8, bits.data(), codes.data(), scales.data(), zeros.data(), means.data());
  const Stored s = stored_tensors(*w);
  auto bytes = [&](const char* k) {
    const auto* p = static_cast<const uint8_t*>(s.at(k).data);
    return std::vector<uint8_t>(p, p + s.at(k).nbytes);
  };
  // 3 bits: Σ i·8^i for i < 8 = 0xFAC688; 2 bits: 3, 0, 1, 2 = 0b10010011 twice.
  EXPECT_EQ(bytes("sl_codes"),
            (std::vector<uint8_t>{0x81, 0x88, 0xC6, 0xFA, 0x93, 0x93, 0, 0, 0, 0xE0, 0, 0}));
  EXPECT_EQ(s.at("sl_codes").shape, (std::vector<int64_t>{2, 6}));
  EXPECT_EQ(bytes("sl_bits"), bits);
  EXPECT_EQ(bytes("sl_zeros"), (std::vector<uint8_t>{0, 3, 2, 0, 7, 1}));
  EXPECT_EQ(s.at("sl_scales").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(s.at("sl_means").shape, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(f16_to_f32(w->means[1]), 0.25f);  // row 1's only 1-bit group
  EXPECT_EQ(std::vector<int64_t>(w->group_offset, w->group_offset + 4), (std::vector<int64_t>{0, 1, 4, 6}));
  EXPECT_EQ(std::vector<int32_t>(w->one_index, w->one_index + 3), (std::vector<int32_t>{0, -1, -1}));
  const std::vector<float> out = dequantized(*w);
  EXPECT_EQ(out[0], 1.5f);            // 0.5 + 1
  EXPECT_EQ(out[1], -0.5f);           // 0.5 − 1
  EXPECT_EQ(out[9], 2.0f * (1 - 3));  // code 1, zero 3
  EXPECT_EQ(out[16], 3.0f * (3 - 2));
  EXPECT_EQ(out[24 + 7], 0.25f - 4);
  EXPECT_EQ(out[24 + 15], 5.0f * (7 - 7));
}

TEST(SlimFormat, TensorsReadBackBitwiseAlsoMisaligned) {
  std::mt19937 rng(5);
  for (const auto& palette : kPalettes)
    for (int64_t gs : {8, 32, 128})
      for (bool misalign : {false, true}) {
        const test::RandomSlim p = test::random_slim(9, 256, gs, palette, rng);
        Stored s = stored_tensors(*p.w);
        std::vector<std::vector<uint8_t>> odd;
        if (misalign)
          for (auto& [k, t] : s) {
            odd.emplace_back(t.nbytes + 1);
            std::memcpy(odd.back().data() + 1, t.data, t.nbytes);
            t.data = odd.back().data() + 1;
          }
        auto back = load(s, 9, 256);
        const SlimWeight& b = as_slim(*back);
        EXPECT_EQ(b.group_size, gs);
        EXPECT_EQ(b.n_one_bit, p.w->n_one_bit);
        EXPECT_EQ(b.row_bytes(), p.w->row_bytes());
        // Views where aligned; the misaligned fp16 tensors are copies the weight keeps.
        EXPECT_EQ(static_cast<const void*>(b.codes), s.at("sl_codes").data);
        EXPECT_EQ(static_cast<const void*>(b.bits), s.at("sl_bits").data);
        EXPECT_EQ(static_cast<const void*>(b.scales) == s.at("sl_scales").data, !misalign);
        if (b.n_one_bit > 0) EXPECT_EQ(static_cast<const void*>(b.means) == s.at("sl_means").data, !misalign);
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

// Through a real file: sl_means is written only with 1-bit groups (the writer would store a zero-size tensor,
// but absent is simpler to read); the writer puts tensors of odd sizes last, so fp16 tensors may be
// misaligned.
TEST(SlimFormat, SafetensorsRoundTripWithAndWithoutOneBitGroups) {
  std::mt19937 rng(7);
  const std::string dir = test::temp_dir("slim");
  for (const auto& palette : kPalettes) {
    const test::RandomSlim p = test::random_slim(3, 72, 8, palette, rng);
    std::map<std::string, TensorView> tensors;
    for (FormatTensor& t : slim_format().tensors(*p.w)) tensors["L." + t.suffix] = t.view;
    EXPECT_EQ(tensors.count("L.sl_means"), p.w->n_one_bit > 0 ? 1u : 0u);
    write_safetensors(dir + "/w.safetensors", tensors);
    const SafetensorsFile f = load_safetensors(dir + "/w.safetensors");
    auto get = [&](std::string_view k) -> const TensorView* {
      auto it = f.tensors.find("L." + std::string(k));
      return it == f.tensors.end() ? nullptr : &it->second;
    };
    auto back = slim_format().from_tensors(get, 3, 72, "w.safetensors: L");
    const std::vector<float> x = dequantized(*p.w), y = dequantized(*back);
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * 4), 0);
  }
}

// A fixed weight for the error messages: rows 4, cols 128, groups of 32 with 2, 1, 3 and 8 bits (row_bytes
// 8 + 4 + 12 + 32 = 56, one 1-bit group).
struct Fixed {
  std::vector<uint8_t> bits = {2, 1, 3, 8}, codes = std::vector<uint8_t>(4 * 128, 1), zeros;
  std::vector<float> scales = std::vector<float>(16, 0.25f), means = std::vector<float>(16, -0.5f);
  std::shared_ptr<SlimWeight> w;
  Fixed() {
    for (int i = 0; i < 16; ++i) zeros.push_back(uint8_t(i % 2));
    w = make_slim(4, 128, 32, bits.data(), codes.data(), scales.data(), zeros.data(), means.data());
  }
};

TEST(SlimFormat, MalformedTensorsGiveOneLineErrors) {
  const Fixed fx;
  const Stored ok = stored_tensors(*fx.w);
  auto error = [&](const Stored& s, int64_t rows = 4, int64_t cols = 128) {
    const std::string e = test::error_of([&] { load(s, rows, cols); });
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    return e;
  };
  EXPECT_EQ(error(ok), "(no error)");
  for (const char* k : {"sl_codes", "sl_bits", "sl_scales", "sl_zeros"}) {
    Stored s = ok;
    s.erase(k);
    EXPECT_EQ(error(s), fmt::format("f.safetensors: L.{}: missing (the slim format needs sl_codes, sl_bits, "
                                    "sl_scales and sl_zeros)",
                                    k));
  }
  Stored s = ok;
  s.erase("sl_means");
  EXPECT_EQ(error(s), "f.safetensors: L.sl_means: missing (1 of the 4 groups have 1 bit and need means)");
  // The shape of the linear.
  EXPECT_EQ(error(ok, 4, 100),
            "f.safetensors: L: slim needs a shape (rows, cols) with cols a multiple of 8, not (4, 100)");
  EXPECT_EQ(error(ok, 0),
            "f.safetensors: L: slim needs a shape (rows, cols) with cols a multiple of 8, not (0, 128)");
  EXPECT_EQ(error(ok, 5), "f.safetensors: L.sl_codes is U8 (4, 56), expected U8 (5, 56)");
  // The bits table: dtype, shape, group size rules, values.
  s = ok;
  s["sl_bits"].dtype = DType::I8;
  EXPECT_EQ(error(s), "f.safetensors: L.sl_bits is I8 (4), expected U8 (4)");
  s = ok;
  s["sl_bits"].shape = {2, 2};
  EXPECT_EQ(error(s),
            "f.safetensors: L.sl_bits has shape (2, 2), not (groups) with the groups dividing 128 columns");
  s = ok;
  s["sl_bits"].shape = {3};
  EXPECT_EQ(error(s),
            "f.safetensors: L.sl_bits has shape (3), not (groups) with the groups dividing 128 columns");
  s = ok;
  s["sl_bits"].shape = {0};
  EXPECT_EQ(error(s),
            "f.safetensors: L.sl_bits has shape (0), not (groups) with the groups dividing 128 columns");
  s = ok;
  s["sl_bits"].shape = {32};  // groups of 4 columns
  EXPECT_EQ(
      error(s),
      "f.safetensors: L.sl_bits: slim group size 4 must be a multiple of 8 dividing the 128 input columns");
  EXPECT_EQ(
      error(ok, 4, 80),  // 4 groups of 20 columns
      "f.safetensors: L.sl_bits: slim group size 20 must be a multiple of 8 dividing the 80 input columns");
  std::vector<uint8_t> bits = fx.bits;
  s = ok;
  s["sl_bits"].data = bits.data();
  for (uint8_t b : {0, 9, 255}) {
    bits[2] = b;
    EXPECT_EQ(error(s), fmt::format("f.safetensors: L.sl_bits[2] = {} is not a bit width in 1..8", b));
  }
  bits[2] = 4;  // 4 more bytes per row than stored
  EXPECT_EQ(error(s), "f.safetensors: L.sl_codes is U8 (4, 56), expected U8 (4, 60)");
  bits[2] = 3, bits[1] = 2;  // no 1-bit group left: 60 bytes per row, and sl_means must go
  EXPECT_EQ(error(s), "f.safetensors: L.sl_codes is U8 (4, 56), expected U8 (4, 60)");
  // Wrong dtype or shape of the other tensors.
  s = ok;
  s["sl_codes"].dtype = DType::I8;
  EXPECT_EQ(error(s), "f.safetensors: L.sl_codes is I8 (4, 56), expected U8 (4, 56)");
  s = ok;
  s["sl_codes"].shape = {4, 14, 4};
  EXPECT_EQ(error(s), "f.safetensors: L.sl_codes is U8 (4, 14, 4), expected U8 (4, 56)");
  s = ok;
  s["sl_scales"].dtype = DType::BF16;
  EXPECT_EQ(error(s), "f.safetensors: L.sl_scales is BF16 (4, 4), expected F16 (4, 4)");
  s = ok;
  s["sl_scales"].shape = {16};
  EXPECT_EQ(error(s), "f.safetensors: L.sl_scales is F16 (16), expected F16 (4, 4)");
  s = ok;
  s["sl_zeros"].shape = {2, 8};
  EXPECT_EQ(error(s), "f.safetensors: L.sl_zeros is U8 (2, 8), expected U8 (4, 4)");
  s = ok;
  s["sl_zeros"].dtype = DType::BOOL;
  EXPECT_EQ(error(s), "f.safetensors: L.sl_zeros is BOOL (4, 4), expected U8 (4, 4)");
  s = ok;
  s["sl_means"].dtype = DType::F32;
  EXPECT_EQ(error(s), "f.safetensors: L.sl_means is F32 (4, 1), expected F16 (4, 1)");
  s = ok;
  s["sl_means"].shape = {1, 4};
  EXPECT_EQ(error(s), "f.safetensors: L.sl_means is F16 (1, 4), expected F16 (4, 1)");
  // Zero-points: at most 2^bits − 1, and 0 in 1-bit groups.
  std::vector<uint8_t> zeros(fx.w->zeros, fx.w->zeros + 16);
  s = ok;
  s["sl_zeros"].data = zeros.data();
  zeros[2 * 4 + 0] = 4;
  EXPECT_EQ(error(s), "f.safetensors: L.sl_zeros: row 2 group 0 has zero-point 4, above 2^2-1");
  zeros[2 * 4 + 0] = 3;
  zeros[3 * 4 + 3] = 255;  // fine in an 8-bit group
  zeros[2 * 4 + 2] = 8;
  EXPECT_EQ(error(s), "f.safetensors: L.sl_zeros: row 2 group 2 has zero-point 8, above 2^3-1");
  zeros[2 * 4 + 2] = 7;
  zeros[1 * 4 + 1] = 1;
  EXPECT_EQ(error(s),
            "f.safetensors: L.sl_zeros: row 1 group 1 is a 1-bit group, its zero-point must be 0, not 1");
  zeros[1 * 4 + 1] = 0;
  EXPECT_EQ(error(s), "(no error)");
  // Scales and means finite.
  std::vector<uint16_t> scales(fx.w->scales, fx.w->scales + 16), means(fx.w->means, fx.w->means + 4);
  s = ok;
  s["sl_scales"].data = scales.data();
  s["sl_means"].data = means.data();
  scales[3 * 4 + 2] = 0x7C00;
  EXPECT_EQ(error(s), "f.safetensors: L.sl_scales: row 3 group 2 is inf (the scales must be finite)");
  scales[3 * 4 + 2] = 0x7E00;
  EXPECT_EQ(error(s), "f.safetensors: L.sl_scales: row 3 group 2 is nan (the scales must be finite)");
  scales[3 * 4 + 2] = 0xFBFF;  // −65504
  means[2] = 0xFC00;
  EXPECT_EQ(error(s), "f.safetensors: L.sl_means: row 2 group 1 is -inf (the means must be finite)");
  means[2] = 0x0001;  // the smallest subnormal
  EXPECT_EQ(error(s), "(no error)");
}

TEST(SlimFormat, MeansAbsentOrEmptyWithoutOneBitGroups) {
  std::mt19937 rng(8);
  const test::RandomSlim p = test::random_slim(4, 64, 16, {2, 4}, rng);
  Stored s = stored_tensors(*p.w);
  ASSERT_EQ(s.count("sl_means"), 0u);
  EXPECT_EQ(test::error_of([&] { load(s, 4, 64); }), "(no error)");
  s["sl_means"] = format_tensor(DType::F16, {4, 0}, nullptr);
  EXPECT_EQ(test::error_of([&] { load(s, 4, 64); }), "(no error)");
  const uint16_t junk[4] = {};
  s["sl_means"] = format_tensor(DType::F16, {4, 1}, junk);
  EXPECT_EQ(test::error_of([&] { load(s, 4, 64); }),
            "f.safetensors: L.sl_means is F16 (4, 1), expected F16 (4, 0)");
}

TEST(SlimFormat, MakeSlimRejectsWhatCannotBeStored) {
  Fixed fx;
  auto make = [&](int64_t gs = 32) {
    return test::error_of([&] {
      make_slim(4, 128, gs, fx.bits.data(), fx.codes.data(), fx.scales.data(), fx.zeros.data(),
                fx.means.data());
    });
  };
  EXPECT_EQ(make(), "(no error)");
  EXPECT_EQ(make(12), "make_slim: slim group size 12 must be a multiple of 8 dividing the 128 input columns");
  EXPECT_EQ(make(48), "make_slim: slim group size 48 must be a multiple of 8 dividing the 128 input columns");
  fx.bits[1] = 0;
  EXPECT_EQ(make(), "make_slim: group 1 has bit width 0 (expected 1..8)");
  fx.bits[1] = 9;
  EXPECT_EQ(make(), "make_slim: group 1 has bit width 9 (expected 1..8)");
  fx.bits[1] = 1;
  fx.codes[128 + 40] = 2;  // row 1, column 40: group 1, 1 bit
  EXPECT_EQ(make(), "make_slim: code 2 of row 1 column 40 does not fit group 1's 1 bits");
  fx.codes[128 + 40] = 1;
  fx.codes[3 * 128 + 127] = 255;  // fine in the 8-bit group
  fx.zeros[4 * 2 + 0] = 4;
  EXPECT_EQ(make(), "make_slim: zero-point 4 of row 2 group 0 exceeds 2^2-1");
  fx.zeros[4 * 2 + 0] = 3;
  fx.zeros[4 * 2 + 1] = 200;                                     // a 1-bit group's: ignored
  fx.means[4 * 2 + 0] = std::numeric_limits<float>::infinity();  // a 2-bit group's: ignored
  EXPECT_EQ(make(), "(no error)");
  fx.scales[4 * 0 + 1] = 1e5f;
  EXPECT_EQ(make(), "make_slim: scale of row 0 group 1 is 100000, which overflows fp16");
  fx.scales[4 * 0 + 1] = 0.5f;
  fx.means[4 * 3 + 1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(make(), "make_slim: mean of row 3 group 1 is nan, not finite");
  fx.means[4 * 3 + 1] = 0.5f;
  auto w = make_slim(4, 128, 32, fx.bits.data(), fx.codes.data(), fx.scales.data(), fx.zeros.data(),
                     fx.means.data());
  EXPECT_EQ(w->zeros[4 * 2 + 1], 0);
  EXPECT_EQ(w->zeros[4 * 2 + 0], 3);
}

}  // namespace
}  // namespace lowbit
