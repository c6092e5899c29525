// The affine quantization primitive on hand-computed cases, and packed == fake-quant bit for bit.
#include "quant/primitives.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/affine_matmul.h"
#include "quant/methods/rtn.h"
#include "quant/synth.h"

namespace lowbit {
namespace {

QuantSpec spec(int bits, bool sym = false) {
  QuantSpec s;
  s.bits = bits;
  s.sym = sym;
  return s;
}

std::vector<uint32_t> codes(const std::vector<float>& x, const AffineParams& p, int maxq) {
  std::vector<uint32_t> q;
  for (float v : x) q.push_back(quantize_value(v, p, maxq));
  return q;
}

TEST(QuantPrimitives, AsymmetricHandExample) {
  // xmin −1, xmax 2, 2 bits: S = 3/3 = 1, Z = round(1) = 1.
  const std::vector<float> x = {-1, 0.25f, 1, 2};
  const AffineParams p = find_params(x.data(), 4, spec(2));
  EXPECT_EQ(p.scale, 1.0f);
  EXPECT_EQ(p.zero, 1);
  EXPECT_EQ(codes(x, p, 3), (std::vector<uint32_t>{0, 1, 2, 3}));
  EXPECT_EQ(fake_quantize_value(0.25f, p, 3), 0.0f);
  EXPECT_EQ(fake_quantize_value(2.0f, p, 3), 2.0f);
}

TEST(QuantPrimitives, RangeAlwaysIncludesZero) {
  // All positive: xmin is 0, not 2. S = 6/3 = 2, Z = 0.
  const std::vector<float> x = {2, 4, 6};
  const AffineParams p = find_params(x.data(), 3, spec(2));
  EXPECT_EQ(p.scale, 2.0f);
  EXPECT_EQ(p.zero, 0);
  EXPECT_EQ(codes(x, p, 3), (std::vector<uint32_t>{1, 2, 3}));
  // All negative: xmax is 0. S = 3/3, Z = round(3) = 3.
  const std::vector<float> y = {-3, -1};
  const AffineParams q = find_params(y.data(), 2, spec(2));
  EXPECT_EQ(q.scale, 1.0f);
  EXPECT_EQ(q.zero, 3);
}

TEST(QuantPrimitives, RoundHalfToEvenTies) {
  // 3 bits, range [−0.5, 6.5]: S = 7/7 = 1, Z = round(0.5) = 0 (half to even; half away from zero would give
  // 1).
  const std::vector<float> x = {-0.5f, 0.5f, 1.5f, 2.5f, 6.5f};
  const AffineParams p = find_params(x.data(), 5, spec(3));
  EXPECT_EQ(p.scale, 1.0f);
  EXPECT_EQ(p.zero, 0);
  // round(−0.5) = −0 → 0, round(0.5) = 0, round(1.5) = 2, round(2.5) = 2, round(6.5) = 6.
  EXPECT_EQ(codes(x, p, 7), (std::vector<uint32_t>{0, 0, 2, 2, 6}));
  // round(x/S) + Z, not round(x/S + Z): with Z = 1, 2.5 → round(2.5) + 1 = 3 (round(3.5) would be 4).
  AffineParams z1 = p;
  z1.zero = 1;
  EXPECT_EQ(quantize_value(2.5f, z1, 7), 3u);
}

TEST(QuantPrimitives, SymmetricHandExample) {
  // 4 bits sym: xmax = max(|−7.5|, 7.5) = 7.5, xmin = −7.5, S = 15/15 = 1, Z = 8; codes 0..15 = −8..7.
  const std::vector<float> x = {-3.2f, 7.5f, 0.6f, -7.5f};
  const AffineParams p = find_params(x.data(), 4, spec(4, true));
  EXPECT_EQ(p.scale, 1.0f);
  EXPECT_EQ(p.zero, 8);
  // round(7.5) = 8 (even) → 16 → clamped to 15 → 7; round(−7.5) = −8 → 0 → −8.
  EXPECT_EQ(codes(x, p, 15), (std::vector<uint32_t>{5, 15, 9, 0}));
  EXPECT_EQ(fake_quantize_value(7.5f, p, 15), 7.0f);
  EXPECT_EQ(fake_quantize_value(-3.2f, p, 15), -3.0f);
  // All non-negative: still the symmetric range [−3.75, 3.75] (S = 0.5).
  const std::vector<float> y = {0, 1, 3.75f};
  const AffineParams q = find_params(y.data(), 3, spec(4, true));
  EXPECT_EQ(q.scale, 0.5f);
  EXPECT_EQ(q.zero, 8);
}

TEST(QuantPrimitives, DegenerateAllZeroRow) {
  const std::vector<float> x(5, 0.0f);
  const AffineParams p = find_params(x.data(), 5, spec(4));
  // Range −1..+1: S = fp16(2/15), Z = round(1 / fp32(2/15)) = round(7.4999995) = 7 (fp32 2/15 rounds up;
  // GPTQ's fp32 arithmetic gives the same 7).
  EXPECT_EQ(p.scale_f16, f32_to_f16(2.0f / 15));
  EXPECT_EQ(1.0f / (2.0f / 15), 7.4999995f);
  EXPECT_EQ(p.zero, 7);
  EXPECT_EQ(fake_quantize_value(0.0f, p, 15), 0.0f);
  const AffineParams s = find_params(x.data(), 5, spec(3, true));
  EXPECT_EQ(s.scale_f16, f32_to_f16(2.0f / 7));
  EXPECT_EQ(s.zero, 4);
  EXPECT_EQ(fake_quantize_value(0.0f, s, 7), 0.0f);
}

TEST(QuantPrimitives, ScalesAreFp16AndCodesUseTheRoundedScale) {
  // S = 1/15 is not an fp16 value; codes are computed with fp16(1/15).
  const std::vector<float> x = {0, 0.5f, 1};
  const AffineParams p = find_params(x.data(), 3, spec(4));
  EXPECT_EQ(p.scale_f16, f32_to_f16(1.0f / 15));
  EXPECT_EQ(p.scale, f16_to_f32(p.scale_f16));
  EXPECT_NE(p.scale, 1.0f / 15);
  EXPECT_EQ(quantize_value(0.5f, p, 15), uint32_t(std::nearbyint(0.5f / p.scale)));
  EXPECT_EQ(fake_quantize_value(1.0f, p, 15), p.scale * 15.0f);
}

TEST(QuantPrimitives, TinyRangeUsesSmallestSubnormalScale) {
  const std::vector<float> x = {-1e-9f, 1e-9f};
  const AffineParams p = find_params(x.data(), 2, spec(4));
  EXPECT_EQ(p.scale_f16, 1);
  EXPECT_GT(p.scale, 0.0f);
  EXPECT_NEAR(fake_quantize_value(1e-9f, p, 15), 0.0f, 1e-7f);
}

TEST(QuantPrimitives, ScaleOverflowIsAnError) {
  const std::vector<float> x = {-1e9f, 1e9f};
  EXPECT_THROW(find_params(x.data(), 2, spec(2)), Error);
}

// GPTQ's MSE search, brute force: the chosen (S, Z) is the first shrink with the least Σ|x̂ − x|^2.4.
TEST(QuantPrimitives, MseSearchPicksTheBestShrink) {
  std::vector<float> x = test::randn(256, 5);
  x[7] = 9.0f;  // an outlier makes shrinking the range pay off
  QuantSpec s = spec(3);
  s.mse = true;
  const AffineParams p = find_params(x.data(), 256, s);
  auto err = [&](float xmin, float xmax) {
    const float S = (xmax - xmin) / 7;
    const float S16 = f16_to_f32(f32_to_f16(S));
    const float Z = std::nearbyint(-xmin / S);
    double e = 0;
    for (float v : x) {
      const float q = std::clamp(std::nearbyint(v / S16) + Z, 0.0f, 7.0f);
      e += std::pow(std::fabs(double(S16 * (q - Z)) - v), 2.4);
    }
    return std::make_pair(e, f32_to_f16(S));
  };
  float lo = 0, hi = 0;
  for (float v : x) lo = std::min(lo, v), hi = std::max(hi, v);
  double best = INFINITY;
  uint16_t best_s = 0;
  for (int i = 0; i < 80; ++i) {
    const float f = float(1.0 - i / 100.0);
    auto [e, s16] = err(f * lo, f * hi);
    if (e < best) best = e, best_s = s16;
  }
  EXPECT_EQ(p.scale_f16, best_s);
  EXPECT_LT(best, err(lo, hi).first);  // the outlier made shrinking worthwhile
}

TEST(QuantPrimitives, PackedEqualsFakeQuantBitForBit) {
  for (int bits = 2; bits <= 8; ++bits)
    for (bool sym : {false, true})
      for (int64_t group : {int64_t(0), int64_t(8), int64_t(32)}) {
        const int64_t rows = 7, cols = 96;
        std::vector<float> w = test::randn(size_t(rows * cols), uint32_t(bits * 10 + sym));
        std::vector<float> fake(w.size()), deq(w.size());
        auto q = quantize_rtn(w.data(), rows, cols, spec(bits, sym),
                              group ? Granularity::Group : Granularity::Channel, group, fake.data());
        affine_dequantize_rows_scalar(*q, 0, rows, deq.data());
        for (size_t i = 0; i < w.size(); ++i)
          ASSERT_EQ(fake[i], deq[i]) << "bits " << bits << " sym " << sym << " group " << group << " i " << i;
        EXPECT_EQ(q->group_size, group ? group : cols);
      }
}

TEST(QuantPrimitives, PackedBuilderRoundTripsCodes) {
  for (int bits = 2; bits <= 8; ++bits) {
    const int64_t rows = 3, cols = 37;
    PackedBuilder pb(bits, rows, cols, cols, false);
    std::mt19937 rng(static_cast<uint32_t>(bits));
    std::vector<uint32_t> want(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) pb.set_code(r, c, want[size_t(r * cols + c)] = rng() % (1u << bits));
    auto w = pb.finish();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        ASSERT_EQ(packed_code(w->codes + r * w->row_bytes(), bits, c), want[size_t(r * cols + c)]);
  }
}

TEST(QuantPrimitives, Checks) {
  std::vector<float> w = {1, 2, NAN, 4};
  try {
    check_finite(w.data(), 2, 2, "model.layers.3.mlp.up_proj.weight");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "model.layers.3.mlp.up_proj.weight contains NaN at (1, 0)");
  }
  w[2] = INFINITY;
  EXPECT_THROW(check_finite(w.data(), 2, 2, "x"), Error);
  EXPECT_THROW(check_quant_shape(1, 0, 64, "x"), Error);
  EXPECT_THROW(check_quant_shape(9, 0, 64, "x"), Error);
  EXPECT_THROW(check_quant_shape(4, 48, 64, "x"), Error);
  EXPECT_NO_THROW(check_quant_shape(4, 32, 64, "x"));
}

}  // namespace
}  // namespace lowbit
