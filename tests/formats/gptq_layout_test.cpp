// AutoGPTQ layout export/import. The export is decoded by an independent routine written here straight from
// AutoGPTQ's unpacking formula (QuantLinear.forward, torch path: per-word shifts `wf`, the 3-bit 10/1/10/1/10
// word scheme, `zeros + 1`), not from our bitstream view, and compared with affine_dequantize_rows_scalar.
// Both dequantized values are exact (fp16 scale × small integer), so they must be equal, not merely close.
#include "formats/gptq_layout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "formats/random_affine.h"
#include "kernels/affine_matmul.h"

namespace lowbit {
namespace {

using Packed = test::RandomAffine;

// Zero-points in [zmin, zmax]; act-order permutes which columns belong to which group.
Packed make_packed(int bits, int64_t rows, int64_t cols, int64_t gs, bool act_order, uint32_t zmin,
                   uint32_t zmax, std::mt19937& rng) {
  auto scale = [](std::mt19937& g) {
    std::uniform_real_distribution<float> u(1e-3f, 0.1f);
    return f32_to_f16(g() % 2 ? u(g) : -u(g));
  };
  return test::random_affine(bits, rows, cols, gs, act_order, rng, scale, zmin, zmax);
}

// Element n of a packed int32 stream laid out as AutoGPTQ packs it, `at(k)` returning word k.
// 2/4/8 bits: word n / (32/b), shifted by b·(n mod 32/b). 3 bits: words 3m, 3m+1, 3m+2 hold elements
// 32m .. 32m+31 as AutoGPTQ's wf table [[0,3,..,27,30,0],[0,1,4,..,28,31],[0,2,5,..,29,0]] and the two
// fix-ups `w[0][10] = (w0 >> 30 & 3) | (w1 << 2 & 4)`, `w[1][11] = (w1 >> 31 & 1) | (w2 << 1 & 6)` describe.
template <typename At>
uint32_t autogptq_element(At at, int bits, int64_t n) {
  if (bits != 3) {
    const int64_t per = 32 / bits;
    return (uint32_t(at(n / per)) >> (bits * (n % per))) & ((1u << bits) - 1);
  }
  const int64_t m = n / 32, j = n % 32;
  const uint32_t w0 = uint32_t(at(3 * m)), w1 = uint32_t(at(3 * m + 1)), w2 = uint32_t(at(3 * m + 2));
  if (j < 10) return (w0 >> (3 * j)) & 7;
  if (j == 10) return ((w0 >> 30) & 3) | ((w1 << 2) & 4);
  if (j < 21) return (w1 >> (3 * (j - 11) + 1)) & 7;
  if (j == 21) return ((w1 >> 31) & 1) | ((w2 << 1) & 6);
  return (w2 >> (3 * (j - 22) + 2)) & 7;
}

// W (out, in) dequantized from the AutoGPTQ tensors: scales[g_idx[i]][o] · (q[i][o] − (qz[g_idx[i]][o] + 1)).
std::vector<float> autogptq_dequantize(const GptqTensors& t, bool v1) {
  const int64_t I = t.in_features, O = t.out_features, zw = O * t.bits / 32;
  std::vector<float> w(static_cast<size_t>(I * O));
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i = 0; i < I; ++i) {
      const int64_t g = t.g_idx[size_t(i)];
      const uint32_t q = autogptq_element([&](int64_t k) { return t.qweight[size_t(k * O + o)]; }, t.bits, i);
      const uint32_t z =
          autogptq_element([&](int64_t k) { return t.qzeros[size_t(g * zw + k)]; }, t.bits, o) + (v1 ? 1 : 0);
      w[size_t(o * I + i)] = f16_to_f32(t.scales[size_t(g * O + o)]) * (float(q) - float(z));
    }
  return w;
}

TEST(GptqLayout, HandPackedFourBitExample) {
  // 8 inputs, 8 outputs, 4 bits, one group. Column o of qweight holds inputs 0..7 in nibbles 0..7 (LSB
  // first).
  GptqTensors t;
  t.bits = 4, t.in_features = 8, t.out_features = 8, t.group_size = -1;
  t.qweight.assign(8, 0);
  t.qweight[0] = 0x76543210;           // output 0: q = 0, 1, ..., 7
  t.qweight[3] = int32_t(0xFEDCBA98);  // output 3: q = 8, ..., 15
  t.qzeros = {int32_t(0x00000007)};    // v1: output 0 has stored 7 → Z = 8; the others stored 0 → Z = 1
  t.scales.assign(8, f32_to_f16(0.5f));
  t.g_idx.assign(8, 0);
  const AffineWeight w = from_gptq(t, GptqZeros::kMinusOne, "hand");
  EXPECT_EQ(w.group_size, 8);
  EXPECT_EQ(w.g_idx, nullptr);  // trivial g_idx dropped
  std::vector<float> out(64);
  affine_dequantize_rows_scalar(w, 0, 8, out.data());
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(out[size_t(i)], 0.5f * float(i - 8));          // row 0
    EXPECT_EQ(out[size_t(3 * 8 + i)], 0.5f * float(i + 7));  // row 3: (8 + i) − 1
    EXPECT_EQ(out[size_t(1 * 8 + i)], -0.5f);                // row 1: q 0, Z 1
  }
}

TEST(GptqLayout, ExportDecodedByAutoGptqFormulaMatchesScalarDequant) {
  std::mt19937 rng(9);
  for (int bits : {2, 3, 4, 8})
    for (int64_t gs : {32, 128, 256})  // 256 = per-channel here
      for (bool act : {false, true})
        for (bool v1 : {true, false}) {
          const int64_t rows = 96, cols = 256;
          const uint32_t maxq = (1u << bits) - 1;
          const Packed p =
              make_packed(bits, rows, cols, gs, act, v1 ? 1 : 0, v1 ? std::min(maxq + 1, 255u) : maxq, rng);
          SCOPED_TRACE("bits=" + std::to_string(bits) + " gs=" + std::to_string(gs) + (act ? " act" : "") +
                       (v1 ? " v1" : " v2"));
          const GptqTensors t = to_gptq(p.w, v1 ? GptqZeros::kMinusOne : GptqZeros::kExact);
          ASSERT_EQ(t.qweight.size(), size_t(cols * bits / 32 * rows));
          ASSERT_EQ(t.qzeros.size(), size_t(cols / gs * rows * bits / 32));
          const std::vector<float> theirs = autogptq_dequantize(t, v1);
          std::vector<float> ours(static_cast<size_t>(rows * cols));
          affine_dequantize_rows_scalar(p.w, 0, rows, ours.data());
          ASSERT_EQ(theirs, ours);
        }
}

void expect_identical(const AffineWeight& a, const AffineWeight& b) {
  ASSERT_EQ(a.bits, b.bits);
  ASSERT_EQ(a.rows, b.rows);
  ASSERT_EQ(a.cols, b.cols);
  ASSERT_EQ(a.group_size, b.group_size);
  const size_t G = size_t(a.n_groups());
  EXPECT_EQ(std::memcmp(a.codes, b.codes, a.row_bytes() * size_t(a.rows)), 0);
  EXPECT_EQ(std::memcmp(a.scales, b.scales, G * size_t(a.rows) * 2), 0);
  EXPECT_EQ(std::memcmp(a.zeros, b.zeros, G * size_t(a.rows)), 0);
  ASSERT_EQ(a.g_idx == nullptr, b.g_idx == nullptr);
  if (a.g_idx) {
    EXPECT_EQ(std::memcmp(a.g_idx, b.g_idx, size_t(a.cols) * 4), 0);
  }
}

TEST(GptqLayout, RoundTripIsBitIdentical) {
  std::mt19937 rng(13);
  for (int bits : {2, 3, 4, 8})
    for (int64_t gs : {32, 64, 128, 384})
      for (bool act : {false, true})
        for (bool v1 : {true, false}) {
          SCOPED_TRACE("bits=" + std::to_string(bits) + " gs=" + std::to_string(gs) + (act ? " act" : "") +
                       (v1 ? " v1" : " v2"));
          const uint32_t maxq = (1u << bits) - 1;
          // v1 round-trips Z in [1, 2^b] (2^b included: that is how AutoGPTQ decodes a stored 2^b − 1).
          const Packed p =
              make_packed(bits, 64, 384, gs, act, v1 ? 1 : 0, v1 ? std::min(maxq + 1, 255u) : maxq, rng);
          const GptqZeros conv = v1 ? GptqZeros::kMinusOne : GptqZeros::kExact;
          const AffineWeight back = from_gptq(to_gptq(p.w, conv), conv, "roundtrip");
          if (act && gs == 384) {
            // One group: every g_idx entry is 0, the trivial map, which from_gptq drops (same weight).
            EXPECT_EQ(back.g_idx, nullptr);
            AffineWeight plain = p.w;
            plain.g_idx = nullptr;
            expect_identical(plain, back);
            continue;
          }
          expect_identical(p.w, back);
          ASSERT_NE(back.owner, nullptr);
          // and the re-export is identical too
          const GptqTensors t1 = to_gptq(p.w, conv), t2 = to_gptq(back, conv);
          EXPECT_EQ(t1.qweight, t2.qweight);
          EXPECT_EQ(t1.qzeros, t2.qzeros);
          EXPECT_EQ(t1.scales, t2.scales);
          EXPECT_EQ(t1.g_idx, t2.g_idx);
        }
}

TEST(GptqLayout, ImportedWeightRunsThroughKernels) {
  // from_gptq's owned buffers feed the SIMD kernels directly; compare against the scalar oracle.
  std::mt19937 rng(4);
  const Packed p = make_packed(4, 64, 256, 128, true, 1, 16, rng);
  const AffineWeight w = from_gptq(to_gptq(p.w), GptqZeros::kMinusOne, "kernels");
  std::vector<float> a(64 * 256), b(64 * 256);
  affine_dequantize_rows(w, 0, 64, a.data());
  affine_dequantize_rows_scalar(p.w, 0, 64, b.data());
  EXPECT_EQ(a, b);
}

TEST(GptqLayout, RejectsMalformedTensors) {
  std::mt19937 rng(2);
  const Packed p = make_packed(4, 32, 64, 32, false, 1, 15, rng);
  const GptqTensors good = to_gptq(p.w);
  EXPECT_NO_THROW(from_gptq(good, GptqZeros::kMinusOne, "ok"));
  auto expect_error = [&](GptqTensors t, GptqZeros z, const char* needle) {
    try {
      from_gptq(t, z, "layer.q_proj");
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("layer.q_proj"), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  };
  GptqTensors t = good;
  t.qweight.pop_back();
  expect_error(t, GptqZeros::kMinusOne, "qweight");
  t = good, t.qzeros.push_back(0);
  expect_error(t, GptqZeros::kMinusOne, "qzeros");
  t = good, t.scales.resize(3);
  expect_error(t, GptqZeros::kMinusOne, "scales");
  t = good, t.g_idx.resize(10);
  expect_error(t, GptqZeros::kMinusOne, "g_idx");
  t = good, t.g_idx[5] = 2;
  expect_error(t, GptqZeros::kMinusOne, "g_idx[5]");
  t = good, t.g_idx[5] = -1;
  expect_error(t, GptqZeros::kMinusOne, "g_idx[5]");
  t = good, t.bits = 5;
  expect_error(t, GptqZeros::kMinusOne, "bit width");
  t = good, t.group_size = 48;
  expect_error(t, GptqZeros::kMinusOne, "group size");
  t = good, t.group_size = 0;
  expect_error(t, GptqZeros::kMinusOne, "group size");
  t = good, t.in_features = -64;
  expect_error(t, GptqZeros::kMinusOne, "shape");
  t = good, t.scales[7] = 0x7C00;  // +inf
  expect_error(t, GptqZeros::kMinusOne, "not finite");
  t = good, t.bits = 3;  // 64 inputs pack at 3 bits, but the sizes no longer match
  expect_error(t, GptqZeros::kMinusOne, "qweight");
  t = good, t.in_features = 40, t.group_size = 40;  // 40·3 bits is not whole words
  t.bits = 3;
  expect_error(t, GptqZeros::kMinusOne, "whole int32 words");

  // 8 bits, v1: stored 255 would decode to Z = 256
  const Packed p8 = make_packed(8, 32, 64, 64, false, 1, 255, rng);
  GptqTensors t8 = to_gptq(p8.w, GptqZeros::kExact);
  t8.qzeros[0] = -1;  // all four stored zero-points 255
  expect_error(t8, GptqZeros::kMinusOne, "overflow");

  // Export errors: Z = 0 has no v1 encoding; 5 bits has no layout; 3-bit needs in % 32 == 0.
  Packed z0 = make_packed(4, 32, 64, 32, false, 1, 15, rng);
  z0.zeros[3] = 0;
  EXPECT_THROW(to_gptq(z0.w, GptqZeros::kMinusOne), Error);
  EXPECT_NO_THROW(to_gptq(z0.w, GptqZeros::kExact));
  const Packed p5 = make_packed(5, 32, 64, 32, false, 0, 31, rng);
  EXPECT_THROW(to_gptq(p5.w), Error);
  const Packed p3 = make_packed(3, 32, 48, 16, false, 1, 7, rng);
  EXPECT_THROW(to_gptq(p3.w), Error);
}

}  // namespace
}  // namespace lowbit
