#include "kernels/quantized.h"

#include <algorithm>
#include <vector>

#include "core/dtype.h"
#include "kernels/dense.h"

namespace lowbit {

void dequantize_rows_scalar(const QuantizedWeight& w, int64_t r0, int64_t nr, float* out) {
  const int64_t G = w.n_groups();
  for (int64_t r = r0; r < r0 + nr; ++r) {
    const uint8_t* row = w.codes + size_t(r) * w.row_bytes();
    float* o = out + (r - r0) * w.cols;
    for (int64_t c = 0; c < w.cols; ++c) {
      const int64_t g = w.group_of(c);
      const float s = f16_to_f32(w.scales[r * G + g]);
      const float z = float(w.zeros[r * G + g]);
      o[c] = s * (float(packed_code(row, w.bits, c)) - z);
    }
  }
}

void quantized_matmul_scalar(const QuantizedWeight& w, const float* x, int64_t n, float* y) {
  std::vector<float> row(size_t(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_rows_scalar(w, r, 1, row.data());
    for (int64_t t = 0; t < n; ++t) {
      float s = 0;
      for (int64_t c = 0; c < w.cols; ++c) s += row[size_t(c)] * x[t * w.cols + c];
      y[t * w.rows + r] = s;
    }
  }
}

void quantized_matmul(const QuantizedWeight& w, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
  if (n <= 4) return quantized_gemv(w, x, n, y);
  check_quantized_weight(w, "quantized_matmul");
  gemm_by_panels(w.rows, w.cols, x, n, y,
                 [&](int64_t r0, int64_t nr, float* out) { dequantize_rows(w, r0, nr, out); });
}

}  // namespace lowbit
