// The dual-binarization format (formats/dualbin.h, DB-LLM §3.2): the reference dequantizer against its
// definition and the LSB-first bit order, exact bits per weight, the checkpoint tensors read back through
// from_tensors (including malformed and misaligned ones), make_dualbin's fp16 rounding, and the exact
// conversion of 2-bit affine weights (dualbin_from_affine) checked against the affine reference dequantizer.
#include "formats/dualbin.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/random_affine.h"
#include "formats/random_dualbin.h"
#include "io/safetensors.h"
#include "kernels/format_kernels.h"
#include "test_util.h"

namespace lowbit {
namespace {

std::map<std::string, TensorView> stored_tensors(const DualBinWeight& w) {
  std::map<std::string, TensorView> out;
  for (FormatTensor& t : dualbin_format().tensors(w)) out[t.suffix] = t.view;
  return out;
}

std::vector<float> dequantized(const PackedWeight& w) {
  std::vector<float> out(size_t(w.rows * w.cols));
  w.format().dequantize_ref(w, 0, w.rows, out.data());
  return out;
}

TEST(DualBinFormat, IsRegisteredWithItsKernels) {
  ASSERT_EQ(find_format("dualbin"), &dualbin_format());
  EXPECT_EQ(dualbin_format().marker_suffix, "bplane1");
  EXPECT_NO_THROW(format_kernels(dualbin_format()));
}

TEST(DualBinFormat, DequantizesBitsLsbFirstToTheSumOfTheSelectedScales) {
  // One row of 16 columns, two groups of 8.
  const uint8_t p1[2] = {0b00000101, 0b10000000};  // b1: columns 0, 2 and 15
  const uint8_t p2[2] = {0b00000110, 0b10000001};  // b2: columns 1, 2, 8 and 15
  const uint16_t sc[4] = {f32_to_f16(0.5f), f32_to_f16(-0.25f), f32_to_f16(3.0f), f32_to_f16(1.0f)};
  DualBinWeight w;
  w.rows = 1, w.cols = 16, w.group_size = 8;
  w.plane1 = p1, w.plane2 = p2, w.scales = sc;
  const std::vector<float> out = dequantized(w);
  const float want[16] = {0.5f, -0.25f, 0.25f, 0, 0, 0, 0, 0, 1.0f, 0, 0, 0, 0, 0, 0, 4.0f};
  for (int c = 0; c < 16; ++c) EXPECT_EQ(out[size_t(c)], want[c]) << c;
  EXPECT_FALSE(std::signbit(out[3]));  // 0 + 0 is +0
}

TEST(DualBinFormat, ReferenceIsTheDefinitionInF32) {
  std::mt19937 rng(1);
  const test::RandomDualBin p = test::random_dualbin(5, 256, 64, rng);
  const std::vector<float> out = dequantized(p.w);
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t c = 0; c < 256; ++c) {
      const int64_t g = r * 4 + c / 64, byte = r * 32 + c / 8;
      const bool b1 = (p.plane1[size_t(byte)] >> (c % 8)) & 1, b2 = (p.plane2[size_t(byte)] >> (c % 8)) & 1;
      const float a1 = f16_to_f32(p.scales[size_t(2 * g)]), a2 = f16_to_f32(p.scales[size_t(2 * g + 1)]);
      const float want = (b1 ? a1 : 0.0f) + (b2 ? a2 : 0.0f);
      ASSERT_EQ(std::memcmp(&out[size_t(r * 256 + c)], &want, 4), 0) << r << " " << c;
    }
}

TEST(DualBinFormat, BitsPerWeightAreTwoPlusThirtyTwoOverTheGroup) {
  std::mt19937 rng(2);
  for (auto [rows, cols, gs] : {std::tuple<int64_t, int64_t, int64_t>{3, 256, 128},
                                {7, 384, 64},
                                {1, 8, 8},
                                {2, 240, 24},
                                {5, 2048, 2048}}) {
    const test::RandomDualBin p = test::random_dualbin(rows, cols, gs, rng);
    double bytes = 0;
    for (const auto& [suffix, t] : stored_tensors(p.w)) bytes += double(t.nbytes);
    const double bits = dualbin_format().bits_per_weight(p.w);
    EXPECT_EQ(bits, 2.0 + 32.0 / double(gs)) << gs;
    EXPECT_DOUBLE_EQ(bits, bytes * 8 / double(rows * cols)) << gs;
  }
  EXPECT_EQ(dualbin_format().bits_per_weight(test::random_dualbin(1, 128, 128, rng).w), 2.25);
}

TEST(DualBinFormat, TensorsReadBackBitwise) {
  std::mt19937 rng(3);
  for (int64_t gs : {int64_t(8), int64_t(64), int64_t(128)}) {
    const test::RandomDualBin p = test::random_dualbin(9, 256, gs, rng);
    const auto stored = stored_tensors(p.w);
    ASSERT_EQ(stored.size(), 3u);
    EXPECT_EQ(stored.at("bplane1").shape, (std::vector<int64_t>{9, 32}));
    EXPECT_EQ(stored.at("bplane2").dtype, DType::U8);
    EXPECT_EQ(stored.at("bscales").dtype, DType::F16);
    EXPECT_EQ(stored.at("bscales").shape, (std::vector<int64_t>{9, 2 * 256 / gs}));
    auto get = [&](std::string_view s) -> const TensorView* {
      auto it = stored.find(std::string(s));
      return it == stored.end() ? nullptr : &it->second;
    };
    auto back = dualbin_format().from_tensors(get, 9, 256, "x");
    ASSERT_EQ(&back->format(), &dualbin_format());
    EXPECT_EQ(as_dualbin(*back).group_size, gs);
    EXPECT_FALSE(back->owner);  // aligned tensors are viewed, not copied
    const std::vector<float> a = dequantized(p.w), b = dequantized(*back);
    std::vector<float> c(a.size());
    format_kernels(dualbin_format()).dequantize_rows(*back, 0, 9, c.data());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
    EXPECT_EQ(std::memcmp(a.data(), c.data(), a.size() * 4), 0);
  }
}

TEST(DualBinFormat, MalformedTensorsGiveOneLineErrors) {
  std::mt19937 rng(4);
  const test::RandomDualBin p = test::random_dualbin(4, 128, 64, rng);
  auto error = [&](std::map<std::string, TensorView> stored, int64_t rows = 4, int64_t cols = 128) {
    auto get = [&](std::string_view s) -> const TensorView* {
      auto it = stored.find(std::string(s));
      return it == stored.end() ? nullptr : &it->second;
    };
    return test::error_of([&] { dualbin_format().from_tensors(get, rows, cols, "f.safetensors: L"); });
  };
  const auto ok = stored_tensors(p.w);
  EXPECT_EQ(error(ok), "(no error)");
  EXPECT_EQ(error(ok, 5), "f.safetensors: L.bplane1 is U8 (4, 16), expected U8 (5, 16)");
  EXPECT_EQ(error(ok, 4, 132), "f.safetensors: L: dualbin needs in_features to be a multiple of 8, not 132");
  // 2 groups of 120 columns are 60 wide; at 64 columns they are 32 wide, but the planes have 16 bytes per
  // row.
  EXPECT_EQ(error(ok, 4, 120),
            "f.safetensors: L.bscales has 2 groups of 60 columns: dualbin groups must be a multiple of 8");
  EXPECT_EQ(error(ok, 4, 64), "f.safetensors: L.bplane1 is U8 (4, 16), expected U8 (4, 8)");
  auto with = [&](const char* name, TensorView t) {
    auto s = ok;
    s[name] = t;
    return s;
  };
  auto drop = [&](const char* name) {
    auto s = ok;
    s.erase(name);
    return s;
  };
  EXPECT_EQ(error(drop("bplane2")),
            "f.safetensors: L.bplane2: missing (the dualbin format needs bplane1, bplane2 and bscales)");
  EXPECT_EQ(error(drop("bscales")),
            "f.safetensors: L.bscales: missing (the dualbin format needs bplane1, bplane2 and bscales)");
  TensorView t = ok.at("bplane2");
  t.dtype = DType::I8;
  EXPECT_EQ(error(with("bplane2", t)), "f.safetensors: L.bplane2 is I8 (4, 16), expected U8 (4, 16)");
  t = ok.at("bplane2");
  t.shape = {4, 8};
  EXPECT_EQ(error(with("bplane2", t)), "f.safetensors: L.bplane2 is U8 (4, 8), expected U8 (4, 16)");
  t = ok.at("bscales");
  t.dtype = DType::BF16;
  EXPECT_EQ(error(with("bscales", t)), "f.safetensors: L.bscales is BF16 (4, 4), expected F16 (4, 4)");
  t = ok.at("bscales");
  t.shape = {16};
  EXPECT_EQ(error(with("bscales", t)), "f.safetensors: L.bscales must be 2-D (rows, 2·groups), not (16)");
  t.shape = {8, 2};  // as many values, but the rows disagree
  EXPECT_EQ(error(with("bscales", t)), "f.safetensors: L.bscales is F16 (8, 2), expected F16 (4, 2)");
  t.shape = {4, 6};  // 3 groups do not divide 128 columns
  EXPECT_EQ(
      error(with("bscales", t)),
      "f.safetensors: L.bscales has 6 columns, not 2 scales times a number of groups dividing 128 columns");
  t.shape = {4, 3};  // an odd number of scales per row
  EXPECT_EQ(
      error(with("bscales", t)),
      "f.safetensors: L.bscales has 3 columns, not 2 scales times a number of groups dividing 128 columns");
  t.shape = {4, 0};
  EXPECT_EQ(
      error(with("bscales", t)),
      "f.safetensors: L.bscales has 0 columns, not 2 scales times a number of groups dividing 128 columns");
  t.shape = {2, 64};  // 32 groups of 4 columns: divides, but a group must be whole bytes
  EXPECT_EQ(error(with("bscales", t), 2),
            "f.safetensors: L.bscales has 32 groups of 4 columns: dualbin groups must be a multiple of 8");
  // A weight whose fields disagree never reaches a kernel.
  const FormatKernels& k = format_kernels(dualbin_format());
  std::vector<float> out(4 * 128), x(128);
  DualBinWeight w = p.w;
  w.group_size = 48;  // does not divide 128
  EXPECT_EQ(test::error_of([&] { k.dequantize_rows(w, 0, 1, out.data()); }),
            "dualbin_dequantize_rows: dualbin group size 48 must be a multiple of 8 dividing the 128 input "
            "columns");
  EXPECT_THROW(k.matmul(w, x.data(), 1, out.data()), Error);
  w = p.w;
  w.group_size = 4;
  w.cols = 4;
  EXPECT_THROW(k.matmul_scalar(w, x.data(), 1, out.data()), Error);
  w = p.w;
  w.scales = nullptr;
  EXPECT_THROW(k.matmul(w, x.data(), 8, out.data()), Error);
  EXPECT_THROW(k.dequantize_rows(p.w, 3, 2, out.data()), Error);  // rows [3, 5) of 4
}

// safetensors does not align tensors: F16 scales at an odd address are read through an aligned copy.
TEST(DualBinFormat, MisalignedScalesAreCopied) {
  std::mt19937 rng(5);
  const test::RandomDualBin p = test::random_dualbin(3, 128, 32, rng);
  std::map<std::string, TensorView> stored;
  std::vector<std::vector<uint8_t>> odd;
  for (FormatTensor& t : dualbin_format().tensors(p.w)) {
    odd.emplace_back(t.view.nbytes + 1);
    std::memcpy(odd.back().data() + 1, t.view.data, t.view.nbytes);
    t.view.data = odd.back().data() + 1;
    stored[t.suffix] = t.view;
  }
  auto get = [&](std::string_view s) -> const TensorView* {
    auto it = stored.find(std::string(s));
    return it == stored.end() ? nullptr : &it->second;
  };
  auto w = dualbin_format().from_tensors(get, 3, 128, "x");
  EXPECT_TRUE(w->owner);
  EXPECT_NE(static_cast<const void*>(as_dualbin(*w).scales), stored.at("bscales").data);
  const std::vector<float> a = dequantized(p.w), c = dequantized(*w);
  EXPECT_EQ(std::memcmp(a.data(), c.data(), a.size() * 4), 0);
}

TEST(DualBinFormat, MakeDualbinPacksBitsAndRoundsScalesToNearestEven) {
  const int64_t rows = 2, cols = 16, gs = 8;
  std::vector<uint8_t> b1(rows * cols, 0), b2(rows * cols, 0);
  b1[0] = b1[9] = b1[31] = 1;
  b2[1] = b2[16] = 1;
  // 1 + 2⁻¹¹ is halfway between the fp16 neighbours 1 and 1 + 2⁻¹⁰: to even, 1. 1 + 3·2⁻¹¹ is halfway
  // between 1 + 2⁻¹⁰ and 1 + 2⁻⁹: to even, 1 + 2⁻⁹. 65519 is below the midpoint 65520 of 65504 and 2¹⁶:
  // 65504. 2⁻²⁵ is halfway between 0 and the smallest subnormal 2⁻²⁴: to even, 0; 3·2⁻²⁶ rounds up to 2⁻²⁴.
  const float a1[4] = {1 + std::ldexp(1.0f, -11), 1 + 3 * std::ldexp(1.0f, -11), 65519.0f,
                       -std::ldexp(1.0f, -25)};
  const float a2[4] = {-0.1f, 3 * std::ldexp(1.0f, -26), -65504.0f, 2.5f};
  auto w = make_dualbin(rows, cols, gs, b1.data(), b2.data(), a1, a2);
  ASSERT_TRUE(w->owner);
  EXPECT_EQ(w->group_size, 8);
  EXPECT_EQ(w->plane1[0], 0x01);
  EXPECT_EQ(w->plane1[1], 0x02);
  EXPECT_EQ(w->plane1[3], 0x80);
  EXPECT_EQ(w->plane2[0], 0x02);
  EXPECT_EQ(w->plane2[2], 0x01);
  const float want[8] = {1.0f,
                         f16_to_f32(f32_to_f16(-0.1f)),
                         1 + std::ldexp(1.0f, -9),
                         std::ldexp(1.0f, -24),
                         65504.0f,
                         -65504.0f,
                         -0.0f,
                         2.5f};
  for (int i = 0; i < 8; ++i) {
    const float got = f16_to_f32(w->scales[i]);
    EXPECT_EQ(std::memcmp(&got, &want[i], 4), 0) << i << ": " << got;
  }
  const std::vector<float> out = dequantized(*w);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], f16_to_f32(f32_to_f16(-0.1f)));
  EXPECT_EQ(out[9], 1 + std::ldexp(1.0f, -9));
  EXPECT_EQ(out[16], -65504.0f);
  EXPECT_EQ(out[31], 0.0f);  // α1 of row 1 group 1 rounded to −0; −0 + 0 = +0
  EXPECT_FALSE(std::signbit(out[31]));

  auto err = [&](const float* x1, const float* x2, const std::vector<uint8_t>& bits) {
    return test::error_of([&] { make_dualbin(rows, cols, gs, bits.data(), b2.data(), x1, x2); });
  };
  float big[4] = {1, 1, 1, 65520.0f};  // the midpoint to 2¹⁶ rounds to even: 2¹⁶, past the largest half
  EXPECT_EQ(err(big, a2, b1), "make_dualbin: alpha1 of row 1 group 1 is 65520, which overflows fp16");
  big[3] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(err(a1, big, b1), "make_dualbin: alpha2 of row 1 group 1 is inf, not finite");
  big[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(err(big, a2, b1), "make_dualbin: alpha1 of row 1 group 1 is nan, not finite");
  std::vector<uint8_t> two = b1;
  two[17] = 2;
  EXPECT_EQ(err(a1, a2, two), "make_dualbin: bit [1, 1] is 2, not 0 or 1");
  EXPECT_EQ(test::error_of([&] { make_dualbin(2, 16, 16, b1.data(), b2.data(), a1, a2); }), "(no error)");
  EXPECT_EQ(test::error_of([&] { make_dualbin(2, 16, 12, b1.data(), b2.data(), a1, a2); }),
            "make_dualbin: dualbin group size 12 must be a multiple of 8 dividing the 16 input columns");
  EXPECT_EQ(
      test::error_of([&] { make_dualbin(2, 12, 4, b1.data(), b2.data(), a1, a2); }),
      "make_dualbin: dualbin needs in_features to be a multiple of 8 (whole bytes of bits per row), not 12");
}

// DB-LLM initialises FDB from 2-bit uniform quantization; dualbin_from_affine does it exactly for every
// zero-point. With positive scales (what every quantizer writes) the dequantized weights are bitwise equal.
TEST(DualBinFormat, FromAffineIsBitwiseTheAffineWeight) {
  std::mt19937 rng(6);
  auto positive = [](std::mt19937& g) {
    uint16_t s = test::wide_random_scale(g);
    return uint16_t(s & 0x7fff);
  };
  struct Shape {
    int64_t rows, cols, gs;
  };
  int zeros_seen[4] = {};
  for (const Shape& s : {Shape{7, 256, 128}, Shape{9, 384, 128}, Shape{4, 512, 64}, Shape{3, 64, 8},
                         Shape{5, 120, 24}, Shape{2, 128, 128}}) {
    SCOPED_TRACE(::testing::Message() << s.rows << "x" << s.cols << " g" << s.gs);
    const test::RandomAffine a = test::random_affine(2, s.rows, s.cols, s.gs, false, rng, positive);
    for (uint8_t z : a.zeros) ++zeros_seen[z];
    auto d = dualbin_from_affine(a.w);
    EXPECT_EQ(d->group_size, s.gs);
    const std::vector<float> want = dequantized(a.w), got = dequantized(*d);
    EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * 4), 0);
    // The scales are ±2S and ±S, signed by the zero-point; DB-LLM's own init (α1 = 2s, α2 = −s) is Z = 1.
    for (int64_t i = 0; i < s.rows * s.cols / s.gs; ++i) {
      const float S = f16_to_f32(a.scales[size_t(i)]);
      const int z = a.zeros[size_t(i)];
      EXPECT_EQ(f16_to_f32(d->scales[2 * i]), (z < 2 ? 2 : -2) * S) << i;
      EXPECT_EQ(f16_to_f32(d->scales[2 * i + 1]), (z % 2 == 0 ? 1 : -1) * S) << i;
    }
  }
  for (int z = 0; z < 4; ++z) EXPECT_GT(zeros_seen[z], 0) << z;  // every case of the mapping was exercised
}

// With scales of either sign the values are still equal; the bits differ only where affine's S·0 is −0.
TEST(DualBinFormat, FromAffineWithNegativeScalesDiffersOnlyInTheSignOfZero) {
  std::mt19937 rng(7);
  const test::RandomAffine a = test::random_affine(2, 16, 256, 64, false, rng);
  auto d = dualbin_from_affine(a.w);
  const std::vector<float> want = dequantized(a.w), got = dequantized(*d);
  int negative_zeros = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i], want[i]) << i;
    if (std::memcmp(&got[i], &want[i], 4) != 0) {
      ASSERT_EQ(want[i], 0.0f);
      ASSERT_TRUE(std::signbit(want[i]));
      ++negative_zeros;
    }
  }
  EXPECT_GT(negative_zeros, 0);  // the test does see negative scales
}

TEST(DualBinFormat, FromAffineRejectsWhatItCannotConvert) {
  std::mt19937 rng(8);
  test::RandomAffine a = test::random_affine(2, 2, 64, 32, false, rng);
  EXPECT_EQ(test::error_of([&] { dualbin_from_affine(a.w); }), "(no error)");
  a.scales[3] = f32_to_f16(40000.0f);  // 2S = 80000 > 65504
  EXPECT_EQ(test::error_of([&] { dualbin_from_affine(a.w); }),
            "dualbin_from_affine: scale 40000 of row 1 group 1: 2·S is not finite in fp16");
  a.scales[3] = f32_to_f16(32752.0f);  // the largest S whose double is finite: 65504
  auto d = dualbin_from_affine(a.w);
  EXPECT_EQ(std::abs(f16_to_f32(d->scales[6])), 65504.0f);
  a.zeros[2] = 4;
  EXPECT_EQ(test::error_of([&] { dualbin_from_affine(a.w); }),
            "dualbin_from_affine: zero-point 4 of row 1 group 0 is outside [0, 3]");
  const test::RandomAffine four = test::random_affine(4, 2, 64, 32, false, rng);
  EXPECT_EQ(test::error_of([&] { dualbin_from_affine(four.w); }),
            "dualbin_from_affine: needs a 2-bit affine weight, not 4 bits");
  const test::RandomAffine act = test::random_affine(2, 2, 64, 32, true, rng);
  EXPECT_EQ(test::error_of([&] { dualbin_from_affine(act.w); }),
            "dualbin_from_affine: act-order (g_idx) weights have no contiguous groups");
  const test::RandomAffine g4 = test::random_affine(2, 2, 64, 4, false, rng);
  EXPECT_EQ(
      test::error_of([&] { dualbin_from_affine(g4.w); }),
      "dualbin_from_affine: dualbin group size 4 must be a multiple of 8 dividing the 64 input columns");
}

// tools/make_fuzz_seeds.py's dualbin seeds for fuzz/packed_linear_fuzz are valid weights, read the way the
// fuzz target reads them.
TEST(DualBinFormat, FuzzSeedsLoad) {
  const auto dir = std::filesystem::path(__FILE__).parent_path() / "../../fuzz/corpus/packed_linear";
  int seeds = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("dualbin_", 0) != 0) continue;
    SCOPED_TRACE(e.path().string());
    std::ifstream f(e.path(), std::ios::binary);
    const std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ASSERT_GT(data.size(), 2u);
    const int64_t cols = 1 + (int64_t(data[0]) | int64_t(data[1]) << 8) % 4096;
    SafetensorsFile st = parse_safetensors_bytes(data.data() + 2, data.size() - 2, "seed");
    auto get = [&](std::string_view suffix) -> const TensorView* {
      auto it = st.tensors.find("L." + std::string(suffix));
      return it == st.tensors.end() ? nullptr : &it->second;
    };
    const int64_t rows = get("bplane1")->shape[0];
    auto w = dualbin_format().from_tensors(get, rows, cols, "seed");
    const std::vector<float> out = dequantized(*w);
    for (float v : out) ASSERT_TRUE(std::isfinite(v));
    ++seeds;
  }
  EXPECT_EQ(seeds, 3);
}

}  // namespace
}  // namespace lowbit
