// The NF4 format (formats/nf4.h): bitsandbytes' code table and decision tree, the signed dynamic map and its
// two quantizers, the nibble order, exact bits per weight, and the checkpoint tensors read back through
// from_tensors, including malformed and misaligned ones. The dynamic map is compared with
// tools/ref_nf4.py's independent NumPy construction (nf4_ref.json).
#include "formats/nf4.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>

#include "core/error.h"
#include "core/json.h"
#include "formats/random_nf4.h"
#include "io/safetensors.h"
#include "kernels/format_kernels.h"

namespace lowbit {
namespace {

const Json& nf4_ref() {
  static const Json j =
      parse_json_file((std::filesystem::path(__FILE__).parent_path() / "nf4_ref.json").string());
  return j;
}

std::map<std::string, TensorView> stored_tensors(const Nf4Weight& w) {
  std::map<std::string, TensorView> out;
  for (FormatTensor& t : nf4_format().tensors(w)) out[t.suffix] = t.view;
  return out;
}

TEST(Nf4Format, CodeTableAndThresholdsAreBitsandbytes) {
  EXPECT_EQ(kNf4Values[0], -1.0f);
  EXPECT_EQ(kNf4Values[7], 0.0f);
  EXPECT_EQ(kNf4Values[15], 1.0f);
  int not_to_even = 0;
  for (int k = 0; k < 15; ++k) {
    EXPECT_LT(kNf4Values[k], kNf4Values[k + 1]);
    // dQuantizeNF4's literals are the double midpoints of the (f32-exact) values, as shortest decimals: one
    // of the two floats nearest the midpoint, the nearest unless the midpoint is a tie between two floats.
    const double mid = (double(kNf4Values[k]) + double(kNf4Values[k + 1])) / 2;
    const float down = float(mid),
                other = float(mid) < mid ? std::nextafter(down, 2.0f) : std::nextafter(down, -2.0f);
    const bool tie = std::fabs(double(other) - mid) == std::fabs(double(down) - mid);
    EXPECT_TRUE(kNf4Thresholds[k] == down || (tie && kNf4Thresholds[k] == other)) << k;
    not_to_even += kNf4Thresholds[k] != down;
  }
  EXPECT_EQ(not_to_even, 4);  // k = 0, 8, 12, 14: ties that the decimal literal breaks away from even
}

TEST(Nf4Format, ThresholdsMatchTheReference) {
  const Json& ref = nf4_ref()["nf4_thresholds"];
  ASSERT_EQ(ref.size(), 15u);
  for (size_t k = 0; k < 15; ++k) EXPECT_EQ(kNf4Thresholds[k], ref[k].get<float>()) << k;
}

TEST(Nf4Format, CodesFollowTheDecisionTree) {
  for (int k = 0; k < 16; ++k) EXPECT_EQ(nf4_code(kNf4Values[k]), k);
  for (int k = 0; k < 15; ++k) {
    // `x > t`: a value exactly on a midpoint takes the lower code, the next float up the upper one.
    EXPECT_EQ(nf4_code(kNf4Thresholds[k]), k);
    EXPECT_EQ(nf4_code(std::nextafter(kNf4Thresholds[k], 2.0f)), k + 1);
  }
  EXPECT_EQ(nf4_code(std::numeric_limits<float>::quiet_NaN()), 0);  // 0·∞ of an all-zero block
  EXPECT_EQ(nf4_code(-INFINITY), 0);
  EXPECT_EQ(nf4_code(INFINITY), 15);
  EXPECT_EQ(nf4_code(1.0000001f), 15);  // w·(1/absmax) may round past ±1
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int i = 0; i < 100000; ++i) {
    const float x = u(rng);
    int above = 0;
    for (float t : kNf4Thresholds) above += x > t;
    ASSERT_EQ(nf4_code(x), above) << x;
    // ... which is a nearest value (up to the f32 rounding of the midpoints).
    const float d = std::fabs(x - kNf4Values[above]);
    for (float v : kNf4Values) ASSERT_LE(d, std::fabs(x - v) + 1e-7f) << x;
  }
}

TEST(Nf4Format, DynamicMapMatchesTheReference) {
  const std::array<float, 256>& m = dynamic_map();
  const Json& ref = nf4_ref()["dynamic_map"];
  ASSERT_EQ(ref.size(), 256u);
  for (size_t i = 0; i < 256; ++i) {
    EXPECT_EQ(m[i], ref[i].get<float>()) << i;
    if (i > 0) EXPECT_LT(m[i - 1], m[i]) << i;
  }
  EXPECT_EQ(m[127], 0.0f);
  EXPECT_EQ(m[255], 1.0f);
  EXPECT_EQ(m[0], -0.99296875f);  // −(0.9859375 + 1)/2: the last linspace(0.1, 1, 65) midpoint
  // Exponent i contributes 2^i magnitudes in (0.1·10^(i−6), 10^(i−6)) of each sign.
  for (int i = 0; i < 7; ++i) {
    const double hi = std::pow(10.0, i - 6), lo = 0.1 * hi;
    int pos = 0, neg = 0;
    for (float v : m) pos += v > lo && v<hi, neg += -v> lo && -v < hi;
    EXPECT_EQ(pos, 1 << i) << i;
    EXPECT_EQ(neg, 1 << i) << i;
  }
}

TEST(Nf4Format, DynamicMapQuantizersPickNearestEntries) {
  const std::array<float, 256>& m = dynamic_map();
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(dynamic_map_code(m[size_t(i)]), i);
    EXPECT_EQ(dynamic_map_nearest(m[size_t(i)]), i);
  }
  EXPECT_EQ(dynamic_map_code(std::numeric_limits<float>::quiet_NaN()), 0);  // 0·∞ of an all-equal group
  EXPECT_EQ(dynamic_map_nearest(std::numeric_limits<float>::quiet_NaN()), 0);
  EXPECT_EQ(dynamic_map_code(-1.0f), 0);
  EXPECT_EQ(dynamic_map_code(1.0f), 255);
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  int differ = 0;
  for (int t = 0; t < 200000; ++t) {
    const float x = t % 2 ? u(rng) : u(rng) * 1e-4f;  // also the dense region near 0
    const uint8_t a = dynamic_map_code(x), b = dynamic_map_nearest(x);
    // Both are nearest entries by exact distance, up to the f32 rounding of the distance or midpoint.
    const double da = std::fabs(double(x) - m[a]), db = std::fabs(double(x) - m[b]);
    for (float v : m) {
      ASSERT_LE(da, std::fabs(double(x) - v) * (1 + 1e-6) + 1e-12) << x;
      ASSERT_LE(db, std::fabs(double(x) - v) * (1 + 1e-6) + 1e-12) << x;
    }
    differ += a != b;
  }
  EXPECT_LT(differ, 20);  // they disagree only within an ulp of a midpoint
}

TEST(Nf4Format, FirstElementIsTheHighNibble) {
  std::vector<uint8_t> codes(32, 0x77);  // code 7 = 0.0 everywhere ...
  codes[0] = 0x0F;                       // ... but column 0 → code 0 (−1), column 1 → code 15 (+1)
  codes[1] = 0xC3;                       // column 2 → 12, column 3 → 3
  const float absmax = 2.0f;
  Nf4Weight w;
  w.rows = 1, w.cols = 64;
  w.codes = codes.data();
  w.absmax = &absmax;
  std::vector<float> out(64);
  nf4_format().dequantize_ref(w, 0, 1, out.data());
  EXPECT_EQ(out[0], -2.0f);
  EXPECT_EQ(out[1], 2.0f);
  EXPECT_EQ(out[2], kNf4Values[12] * 2);
  EXPECT_EQ(out[3], kNf4Values[3] * 2);
  EXPECT_EQ(out[63], 0.0f);
  EXPECT_EQ(nf4_packed_code(codes.data(), 0), 0);
  EXPECT_EQ(nf4_packed_code(codes.data(), 1), 15);
}

TEST(Nf4Format, DequantizationIsTheUpstreamF32Arithmetic) {
  std::mt19937 rng(3);
  for (bool icq : {false, true}) {
    const test::RandomNf4 p = test::random_nf4(4, 128, true, icq, rng);
    std::vector<float> out(4 * 128);
    nf4_format().dequantize_ref(p.w, 0, 4, out.data());
    for (int64_t i = 0; i < 4 * 128; ++i) {
      const int64_t b = i / 64;
      const float a = dynamic_map()[p.absmax_q[size_t(b)]] * p.absmax2[0] + p.w.absmax_offset;
      float want = kNf4Values[nf4_packed_code(p.codes.data(), i)] * a;
      if (icq) want += dynamic_map()[p.tau_q[size_t(b)]] * p.tau2[0];
      ASSERT_EQ(out[size_t(i)], want) << i;
    }
  }
}

TEST(Nf4Format, BitsPerWeightCountEveryStoredByte) {
  std::mt19937 rng(4);
  // 300 blocks: one full group of 256 and a partial one of 44.
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{150, 128}, {384, 1024}, {1, 64}})
    for (bool dq : {false, true})
      for (bool icq : {false, true}) {
        const test::RandomNf4 p = test::random_nf4(rows, cols, dq, icq, rng);
        double bytes = 0;
        for (const auto& [suffix, t] : stored_tensors(p.w)) bytes += double(t.nbytes);
        EXPECT_DOUBLE_EQ(nf4_format().bits_per_weight(p.w), bytes * 8 / double(rows * cols))
            << rows << dq << icq;
      }
  // bitsandbytes' ≈ 4.127 for a large tensor: 4 + 8/64 + 32/(64·256) + 32/numel.
  Nf4Weight big;
  big.rows = 4096, big.cols = 4096;
  const uint8_t dummy = 0;
  big.codes = &dummy;
  big.absmax_q = &dummy;
  EXPECT_NEAR(big.bits_per_weight(), 4.127, 1e-3);
  EXPECT_DOUBLE_EQ(big.bits_per_weight(), 4 + (8.0 * 262144 + 32.0 * 1024 + 32) / (4096.0 * 4096));
}

TEST(Nf4Format, TensorsReadBackBitwise) {
  std::mt19937 rng(5);
  for (bool dq : {false, true})
    for (bool icq : {false, true}) {
      const test::RandomNf4 p = test::random_nf4(150, 128, dq, icq, rng);
      const auto stored = stored_tensors(p.w);
      EXPECT_EQ(stored.size(), size_t(1 + (dq ? 3 : 1) + (icq ? 2 : 0)));
      auto get = [&](std::string_view s) -> const TensorView* {
        auto it = stored.find(std::string(s));
        return it == stored.end() ? nullptr : &it->second;
      };
      auto back = nf4_format().from_tensors(get, 150, 128, "x");
      ASSERT_EQ(&back->format(), &nf4_format());
      EXPECT_EQ(as_nf4(*back).double_quant(), dq);
      EXPECT_EQ(as_nf4(*back).icq(), icq);
      std::vector<float> a(150 * 128), b(150 * 128), c(150 * 128);
      nf4_format().dequantize_ref(p.w, 0, 150, a.data());
      nf4_format().dequantize_ref(*back, 0, 150, b.data());
      format_kernels(nf4_format()).dequantize_rows(*back, 0, 150, c.data());
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
      EXPECT_EQ(std::memcmp(a.data(), c.data(), a.size() * 4), 0);
    }
}

TEST(Nf4Format, MalformedTensorsGiveOneLineErrors) {
  std::mt19937 rng(6);
  const test::RandomNf4 p = test::random_nf4(4, 128, true, true, rng);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto error = [&](std::map<std::string, TensorView> stored, int64_t rows = 4, int64_t cols = 128) {
    auto get = [&](std::string_view s) -> const TensorView* {
      auto it = stored.find(std::string(s));
      return it == stored.end() ? nullptr : &it->second;
    };
    try {
      nf4_format().from_tensors(get, rows, cols, "f.safetensors: L");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const auto ok = stored_tensors(p.w);
  EXPECT_EQ(error(ok), "");
  EXPECT_EQ(error(ok, 5), "f.safetensors: L.nf4_codes is U8 (4, 64), expected U8 (5, 64)");
  EXPECT_EQ(error(ok, 4, 96), "f.safetensors: L: nf4 needs in_features to be a multiple of 64, not 96");
  auto drop = [&](std::initializer_list<const char*> names) {
    auto s = ok;
    for (const char* n : names) s.erase(n);
    return s;
  };
  EXPECT_EQ(error(drop({"nf4_codes"})), "f.safetensors: L.nf4_codes: missing");
  EXPECT_EQ(error(drop({"nf4_absmax_q"})),
            "f.safetensors: L: needs either nf4_absmax or nf4_absmax_q (double quantization), not neither");
  EXPECT_EQ(error(drop({"nf4_absmax_offset"})), "f.safetensors: L.nf4_absmax_offset: missing");
  EXPECT_EQ(error(drop({"nf4_tau2"})), "f.safetensors: L: ICQ needs both nf4_tau_q and nf4_tau2");
  auto with = [&](const char* name, TensorView t) {
    auto s = ok;
    s[name] = t;
    return s;
  };
  TensorView absmax = ok.at("nf4_absmax2");
  absmax.shape = {8};
  absmax.nbytes = 32;
  const std::vector<float> eight(8, 1.0f);
  absmax.data = eight.data();
  EXPECT_EQ(error(with("nf4_absmax", absmax)),
            "f.safetensors: L: needs either nf4_absmax or nf4_absmax_q (double quantization), not both");
  TensorView bad_dtype = ok.at("nf4_absmax_q");
  bad_dtype.dtype = DType::I8;
  EXPECT_EQ(error(with("nf4_absmax_q", bad_dtype)),
            "f.safetensors: L.nf4_absmax_q is I8 (8), expected U8 (8)");
  TensorView scalar = ok.at("nf4_absmax_offset");
  scalar.shape = {1};
  EXPECT_EQ(error(with("nf4_absmax_offset", scalar)),
            "f.safetensors: L.nf4_absmax_offset is F32 (1), expected F32 ()");
  TensorView nonfinite = ok.at("nf4_tau2");
  nonfinite.data = &nan;
  EXPECT_EQ(error(with("nf4_tau2", nonfinite)), "f.safetensors: L.nf4_tau2[0] = nan is not finite");
  // A weight whose fields disagree never reaches a kernel.
  Nf4Weight w = p.w;
  w.absmax = p.absmax2.data();
  EXPECT_THROW(format_kernels(nf4_format()).dequantize_rows(w, 0, 1, nullptr), Error);
  w = p.w;
  w.rows = 5;
  std::vector<float> out(128);
  EXPECT_THROW(format_kernels(nf4_format()).dequantize_rows(w, 4, 2, out.data()), Error);
}

// safetensors does not align tensors: F32 tensors at odd addresses are read through aligned copies.
TEST(Nf4Format, MisalignedF32TensorsAreCopied) {
  std::mt19937 rng(7);
  for (bool dq : {false, true}) {
    const test::RandomNf4 p = test::random_nf4(3, 128, dq, true, rng);
    std::map<std::string, TensorView> stored;
    std::vector<std::vector<uint8_t>> odd;
    for (FormatTensor& t : nf4_format().tensors(p.w)) {
      odd.emplace_back(t.view.nbytes + 1);
      std::memcpy(odd.back().data() + 1, t.view.data, t.view.nbytes);
      t.view.data = odd.back().data() + 1;
      stored[t.suffix] = t.view;
    }
    auto get = [&](std::string_view s) -> const TensorView* {
      auto it = stored.find(std::string(s));
      return it == stored.end() ? nullptr : &it->second;
    };
    auto w = nf4_format().from_tensors(get, 3, 128, "x");
    EXPECT_TRUE(w->owner);
    std::vector<float> a(3 * 128), c(3 * 128);
    nf4_format().dequantize_ref(p.w, 0, 3, a.data());
    nf4_format().dequantize_ref(*w, 0, 3, c.data());
    EXPECT_EQ(std::memcmp(a.data(), c.data(), a.size() * 4), 0);
  }
}

// tools/make_fuzz_seeds.py's NF4 seeds for fuzz/packed_linear_fuzz are valid weights (so the fuzzer starts
// from inputs that reach the dequantizer), read the way the fuzz target reads them.
TEST(Nf4Format, FuzzSeedsLoad) {
  const auto dir = std::filesystem::path(__FILE__).parent_path() / "../../fuzz/corpus/packed_linear";
  int seeds = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("nf4_", 0) != 0) continue;
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
    const int64_t rows = get("nf4_codes")->shape[0];
    auto w = nf4_format().from_tensors(get, rows, cols, "seed");
    std::vector<float> out(size_t(rows * cols));
    nf4_format().dequantize_ref(*w, 0, rows, out.data());
    ++seeds;
  }
  EXPECT_EQ(seeds, 4);
}

}  // namespace
}  // namespace lowbit
