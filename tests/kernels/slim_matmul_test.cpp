// SliM kernels: SIMD dequantization (every Highway target this CPU supports) vs the reference dequantizer
// (bitwise); the GEMV's per-lane decoding with one-hot inputs; and the GEMV (n = 1..4), the panel path (n >
// 4), the scalar twin and the generic dot-product oracle vs a double-precision product with a derived
// tolerance. Shapes: one group per row (G = 1), groups of 8, 32, 40, 48, 64, 128, 384 columns (whole SIMD
// blocks, and groups whose last codes take the one-at-a-time path), mixtures of 1..8-bit groups, all 1-bit
// and no 1-bit weights, row counts that are not multiples of the 8-row thread chunks, and a shape large
// enough for the OpenMP paths.
//
// Tolerance. Let M = Σ_g M_g over the groups, with M_g = |S|·(Σ_{c∈g}|q_c·x_c| + |Z|·Σ_{c∈g}|x_c|) for a
// group of ≥ 2 bits and M_g = |μ|·Σ_{c∈g}|x_c| + |α|·(2·Σ_{q_c=1}|x_c| + Σ_{c∈g}|x_c|) for a 1-bit group: the
// sum of the magnitudes of every term the decomposition S·(Σ q·x − Z·X_g), μ·X_g + α·(2·Σ_{q=1} x − X_g)
// adds. In the GEMV a term passes through its product, ≤ group_size additions inside its group (lane chains,
// chain sums, or the scalar chain of the group's last codes; X_g is rounded once from double), ≤ 5 operations
// combining the group (×S or ×2α, −Z·X_g or μ·X_g − α·X_g), ≤ G additions across groups and ≤ 4 + 1 in the
// final reduction; since group_size + G ≤ cols + 1, every term carries at most cols + 16 relative roundings,
// so |ŷ − y| ≤ γ_{cols+16}·M (Higham, Accuracy and Stability, §3.1; γ_k = k·u/(1 − k·u), u = 2⁻²⁴). The
// scalar twin rounds a term at most as often (X_g in f32 in column order: ≤ group_size additions). The
// dequantizing paths (panels + sgemm, the dot-product oracle) add rounded products of the exact f32 Ŵ: ≤
// γ_{cols}·Σ|Ŵ·x| ≤ γ_{cols}·(1 + u)·M. The reference is Σ Ŵ·x in double over the dequantized f32 Ŵ, whose
// 1-bit values fl(μ ± α) differ from μ ± α by ≤ u·(|μ| + |α|): one more u·M; its own rounding ~cols·2⁻⁵³·M is
// covered by a slack of 1e-12·M. So every path is within (γ_{cols+17} + 1e-12)·M of the reference.
#include "kernels/slim_matmul.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "formats/affine.h"
#include "formats/random_slim.h"
#include "kernels/format_kernels.h"
#include "test_util.h"

namespace lowbit {
namespace {

double gamma(int64_t k) {
  const double u = std::ldexp(1.0, -24);
  return double(k) * u / (1 - double(k) * u);
}

float fp16(float v) {
  return f16_to_f32(f32_to_f16(v));
}

struct Case {
  int64_t rows, cols, gs;
  std::vector<int> palette;
};
const Case kCases[] = {{1, 128, 128, {1}},
                       {1, 128, 128, {3}},
                       {2, 48, 48, {3}},
                       {3, 256, 64, {2, 3, 4}},
                       {17, 384, 128, {1, 2, 3}},
                       {40, 1024, 128, {1, 2, 2, 3}},
                       {7, 64, 32, {1, 2, 3, 4, 5, 6, 7, 8}},
                       {9, 96, 8, {1, 2, 3, 4, 5, 6, 7, 8}},
                       {6, 240, 40, {1, 2, 3, 4, 5, 6, 7, 8}},
                       {5, 512, 32, {2, 3, 4}},
                       {11, 320, 64, {5, 6, 7}},
                       {13, 192, 32, {1}},
                       {10, 1152, 384, {1, 3, 8}},
                       {129, 512, 128, {2, 3, 4, 5, 6, 7, 8}},
                       {33, 2048, 128, {1, 2, 3}}};

::testing::Message describe(const Case& cs) {
  ::testing::Message m;
  m << cs.rows << "x" << cs.cols << " g" << cs.gs << " bits";
  for (int b : cs.palette) m << " " << b;
  return m;
}

TEST(SlimMatmul, DequantizeRowsIsBitwiseTheReferenceOnEveryTarget) {
  std::mt19937 rng(11);
  for (const Case& cs : kCases) {
    const test::RandomSlim p = test::random_slim(cs.rows, cs.cols, cs.gs, cs.palette, rng);
    SCOPED_TRACE(describe(cs));
    std::vector<float> ref(size_t(cs.rows * cs.cols));
    slim_dequantize_rows_scalar(*p.w, 0, cs.rows, ref.data());
    test::for_each_simd_target([&] {
      std::vector<float> out(ref.size(), NAN);
      slim_dequantize_rows(*p.w, 0, cs.rows, out.data());
      EXPECT_EQ(std::memcmp(out.data(), ref.data(), ref.size() * 4), 0);
      std::fill(out.begin(), out.end(), NAN);
      format_kernels(slim_format()).dequantize_rows(*p.w, 0, cs.rows, out.data());
      EXPECT_EQ(std::memcmp(out.data(), ref.data(), ref.size() * 4), 0);
      if (cs.rows >= 3) {
        std::vector<float> mid(size_t(2 * cs.cols), NAN);
        slim_dequantize_rows(*p.w, 1, 2, mid.data());
        EXPECT_EQ(std::memcmp(mid.data(), ref.data() + cs.cols, mid.size() * 4), 0);
      }
    });
  }
}

// x_t = e_{c_t}: every product but one is an exact zero, and X_g is 1 in the column's group, 0 elsewhere. In
// a group of ≥ 2 bits the GEMV's S·q − S·Z (or S·(q − Z)) is then exact, the dequantizer's value (== rather
// than bits: a zero weight may come out +0 from −0 + 0), so a code decoded into the wrong lane or plane
// shows. In a 1-bit group μ·X + α·(2·Σ_{q=1} x − X) is fl(μ − α) plus 2α when the bit is set: within 3u·(|μ|
// + |α|) of the dequantizer's fl(μ ± α) (4u allowed), against a difference of 2|α| for a wrong bit.
TEST(SlimMatmul, GemvDecodesEveryLaneOnEveryTarget) {
  std::mt19937 rng(13);
  const double u = std::ldexp(1.0, -24);
  for (const Case& cs : kCases) {
    if (cs.cols > 1024) continue;  // the others cover the same group shapes, faster
    const test::RandomSlim p = test::random_slim(cs.rows, cs.cols, cs.gs, cs.palette, rng);
    SCOPED_TRACE(describe(cs));
    const int64_t G = cs.cols / cs.gs;
    std::vector<float> ref(size_t(cs.rows * cs.cols));
    slim_dequantize_rows_scalar(*p.w, 0, cs.rows, ref.data());
    test::for_each_simd_target([&] {
      for (int64_t c0 = 0; c0 < cs.cols; c0 += 4) {
        const int64_t n = std::min<int64_t>(4, cs.cols - c0);
        std::vector<float> x(size_t(n * cs.cols), 0.0f), y(size_t(n * cs.rows), NAN);
        for (int64_t t = 0; t < n; ++t) x[size_t(t * cs.cols + c0 + t)] = 1.0f;
        slim_gemv(*p.w, x.data(), n, y.data());
        for (int64_t t = 0; t < n; ++t) {
          const int64_t c = c0 + t, g = c / cs.gs;
          for (int64_t r = 0; r < cs.rows; ++r) {
            const float got = y[size_t(t * cs.rows + r)], want = ref[size_t(r * cs.cols + c)];
            if (p.bits[size_t(g)] >= 2) {
              ASSERT_EQ(got, want) << "row " << r << " column " << c << " n=" << n;
            } else {
              const size_t rg = size_t(r * G + g);
              const double tol = 4 * u * (std::fabs(fp16(p.means[rg])) + std::fabs(fp16(p.scales[rg])));
              ASSERT_LE(std::fabs(double(got) - double(want)), tol) << "row " << r << " column " << c;
            }
          }
        }
      }
    });
  }
}

TEST(SlimMatmul, MatmulMatchesTheDoubleReferenceOnEveryTarget) {
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const Case& cs : kCases) {
    const test::RandomSlim p = test::random_slim(cs.rows, cs.cols, cs.gs, cs.palette, rng);
    const int64_t G = cs.cols / cs.gs;
    std::vector<float> wq(size_t(cs.rows * cs.cols));
    slim_dequantize_rows_scalar(*p.w, 0, cs.rows, wq.data());
    for (int64_t n : {1, 2, 3, 4, 5, 17}) {
      SCOPED_TRACE(describe(cs) << " n=" << n);
      std::vector<float> x(size_t(n * cs.cols));
      for (float& v : x) v = nd(rng);
      std::vector<double> exact(size_t(n * cs.rows)), mag(size_t(n * cs.rows));
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < cs.rows; ++r) {
          double s = 0, m = 0;
          for (int64_t c = 0; c < cs.cols; ++c)
            s += double(wq[size_t(r * cs.cols + c)]) * double(x[size_t(t * cs.cols + c)]);
          for (int64_t g = 0; g < G; ++g) {
            const size_t rg = size_t(r * G + g);
            const double sc = std::fabs(double(fp16(p.scales[rg]))),
                         mu = std::fabs(double(fp16(p.means[rg])));
            double ax = 0, aqx = 0;  // Σ|x|, Σ|q·x|
            for (int64_t c = g * cs.gs; c < (g + 1) * cs.gs; ++c) {
              const double xv = std::fabs(double(x[size_t(t * cs.cols + c)]));
              ax += xv;
              aqx += double(p.codes[size_t(r * cs.cols + c)]) * xv;
            }
            m += p.bits[size_t(g)] == 1 ? mu * ax + sc * (2 * aqx + ax)
                                        : sc * (aqx + double(p.zeros[rg]) * ax);
          }
          exact[size_t(t * cs.rows + r)] = s;
          mag[size_t(t * cs.rows + r)] = m;
        }
      const double tol = gamma(cs.cols + 17) + 1e-12;
      auto check = [&](const std::vector<float>& y, const char* what) {
        for (size_t i = 0; i < y.size(); ++i)
          ASSERT_LE(std::fabs(double(y[i]) - exact[i]), tol * mag[i]) << what << " " << i;
      };
      std::vector<float> ys(size_t(n * cs.rows), NAN);
      slim_matmul_scalar(*p.w, x.data(), n, ys.data());
      check(ys, "scalar twin");
      std::vector<float> yt(ys.size(), NAN);
      format_kernels(slim_format()).matmul_scalar(*p.w, x.data(), n, yt.data());
      EXPECT_EQ(std::memcmp(yt.data(), ys.data(), ys.size() * 4), 0);
      std::fill(yt.begin(), yt.end(), NAN);
      packed_matmul_scalar(*p.w, x.data(), n, yt.data());
      check(yt, "dot-product oracle");
      test::for_each_simd_target([&] {
        std::vector<float> y(ys.size(), NAN);
        format_kernels(slim_format()).matmul(*p.w, x.data(), n, y.data());
        check(y, n <= 4 ? "simd gemv" : "panels + sgemm");
        if (n <= 4) {
          std::vector<float> y2(ys.size(), NAN);
          slim_gemv(*p.w, x.data(), n, y2.data());
          EXPECT_EQ(std::memcmp(y2.data(), y.data(), y.size() * 4), 0);
        }
      });
    }
  }
}

// The twin is the decomposition itself: per group S·(Σ q·x − Z·X_g) or μ·X_g + α·(2·Σ_{q=1} x − X_g) in f32.
TEST(SlimMatmul, ScalarTwinIsTheDecompositionInColumnOrder) {
  std::mt19937 rng(15);
  const test::RandomSlim p = test::random_slim(3, 96, 32, {1, 2, 5}, rng);
  std::vector<float> x(96);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& v : x) v = nd(rng);
  std::vector<float> y(3);
  slim_matmul_scalar(*p.w, x.data(), 1, y.data());
  for (int64_t r = 0; r < 3; ++r) {
    float acc = 0;
    for (int64_t g = 0; g < 3; ++g) {
      float X = 0, qx = 0;
      for (int64_t c = g * 32; c < (g + 1) * 32; ++c) X += x[size_t(c)];
      for (int64_t c = g * 32; c < (g + 1) * 32; ++c) qx += float(p.codes[size_t(r * 96 + c)]) * x[size_t(c)];
      const float s = fp16(p.scales[size_t(r * 3 + g)]), m = fp16(p.means[size_t(r * 3 + g)]);
      acc += p.bits[size_t(g)] == 1 ? m * X + s * (2.0f * qx - X)
                                    : s * (qx - float(p.zeros[size_t(r * 3 + g)]) * X);
    }
    EXPECT_EQ(std::memcmp(&acc, &y[size_t(r)], 4), 0) << r;
  }
}

TEST(SlimMatmul, BadArgumentsAreOneLineErrors) {
  std::mt19937 rng(14);
  const test::RandomSlim p = test::random_slim(4, 64, 16, {1, 2, 3, 8}, rng);
  std::vector<float> x(5 * 64), y(5 * 4);
  EXPECT_EQ(test::error_of([&] { slim_gemv(*p.w, x.data(), 5, y.data()); }),
            "slim_gemv: 5 tokens (supports 1..4)");
  EXPECT_EQ(test::error_of([&] { slim_gemv(*p.w, x.data(), 0, y.data()); }),
            "slim_gemv: 0 tokens (supports 1..4)");
  EXPECT_EQ(test::error_of([&] { slim_dequantize_rows(*p.w, 3, 2, y.data()); }),
            "slim_dequantize_rows: rows [3, 5) outside [0, 4)");
  // A weight whose buffers or tables were changed after it was built: caught before any byte is read.
  SlimWeight bad = *p.w;
  bad.zeros = nullptr;
  EXPECT_EQ(test::error_of([&] { slim_gemv(bad, x.data(), 1, y.data()); }),
            "slim_gemv: missing slim buffers");
  bad = *p.w;
  bad.means = nullptr;
  EXPECT_EQ(test::error_of([&] { slim_matmul(bad, x.data(), 5, y.data()); }),
            "slim_matmul: missing the means (1 of the 4 groups have 1 bit)");
  std::vector<uint8_t> bits(p.w->bits, p.w->bits + 4);
  bad = *p.w;
  bad.bits = bits.data();
  const size_t two = size_t(std::find(bits.begin(), bits.end(), 2) - bits.begin());
  bits[two] = 9;
  EXPECT_EQ(test::error_of([&] { slim_dequantize_rows(bad, 0, 4, y.data()); }),
            fmt::format("slim_dequantize_rows: group {} has bit width 9 (expected 1..8)", two));
  bits[two] = 4;  // more bytes per row than the codes have
  EXPECT_EQ(test::error_of([&] { slim_matmul_scalar(bad, x.data(), 1, y.data()); }),
            fmt::format(
                "slim_matmul_scalar: the derived group tables disagree with the bit widths (group {})", two));
  bad.group_size = 12;
  EXPECT_EQ(test::error_of([&] { slim_gemv(bad, x.data(), 1, y.data()); }),
            "slim_gemv: slim group size 12 must be a multiple of 8 dividing the 64 input columns");
}

}  // namespace
}  // namespace lowbit
