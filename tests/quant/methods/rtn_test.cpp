// RTN equals the formula, written out independently here in double where it is exact.
#include "quant/methods/rtn.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/dtype.h"
#include "kernels/affine_matmul.h"
#include "quant/synth.h"

namespace lowbit {
namespace {

// x̂ of one group by the formula.
void reference(const float* x, int64_t n, int bits, bool sym, float* out) {
  const double maxq = std::ldexp(1.0, bits) - 1;
  double lo = 0, hi = 0;
  for (int64_t i = 0; i < n; ++i) lo = std::min(lo, double(x[i])), hi = std::max(hi, double(x[i]));
  if (sym) hi = std::max(-lo, hi), lo = -hi;
  if (lo == hi) lo = -1, hi = 1;
  const float S32 = float((hi - lo) / maxq);  // the fp32 value GPTQ computes
  const double S = f16_to_f32(f32_to_f16(S32));
  const double Z = sym ? (maxq + 1) / 2 : std::clamp(std::nearbyint(-lo / S32), 0.0, maxq);
  for (int64_t i = 0; i < n; ++i) {
    const double q = std::clamp(std::nearbyint(double(float(x[i] / float(S)))) + Z, 0.0, maxq);
    out[i] = float(S * (q - Z));  // exact: S has 11 significant bits, q − Z at most 9
  }
}

TEST(Rtn, EqualsTheFormula) {
  const int64_t rows = 16, cols = 128;
  for (int bits : {2, 3, 4, 8})
    for (bool sym : {false, true})
      for (int64_t group : {int64_t(0), int64_t(32), int64_t(128)}) {
        std::vector<float> w = test::randn(size_t(rows * cols), uint32_t(bits + 100 * sym + group));
        w[5] = 0, w[cols + 3] = 4.0f;                                 // a zero and an outlier
        std::fill(w.begin() + 2 * cols, w.begin() + 3 * cols, 0.0f);  // an all-zero row
        std::vector<float> want(w.size()), got(w.size());
        const int64_t gs = group ? group : cols;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t g = 0; g < cols / gs; ++g)
            reference(&w[size_t(r * cols + g * gs)], gs, bits, sym, &want[size_t(r * cols + g * gs)]);
        QuantSpec s;
        s.bits = bits;
        s.sym = sym;
        auto q =
            quantize_rtn(w.data(), rows, cols, s, group ? Granularity::Group : Granularity::Channel, group);
        affine_dequantize_rows_scalar(*q, 0, rows, got.data());
        for (size_t i = 0; i < w.size(); ++i)
          ASSERT_EQ(got[i], want[i]) << "bits " << bits << " sym " << sym << " group " << group << " at "
                                     << i;
      }
}

TEST(Rtn, PerTensorSharesOneScale) {
  const int64_t rows = 4, cols = 8;
  std::vector<float> w = test::randn(size_t(rows * cols), 3);
  std::vector<float> want(w.size()), got(w.size());
  reference(w.data(), rows * cols, 4, false, want.data());
  QuantSpec s;
  auto q = quantize_rtn(w.data(), rows, cols, s, Granularity::Tensor, 0, got.data());
  for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(got[i], want[i]);
  for (int64_t r = 1; r < rows; ++r) EXPECT_EQ(q->scales[r], q->scales[0]);
}

}  // namespace
}  // namespace lowbit
