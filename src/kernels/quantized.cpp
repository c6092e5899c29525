#include "kernels/quantized.h"

#include <cblas.h>

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

void dequantize_rows(const QuantizedWeight& w, int64_t r0, int64_t nr, float* out) {
#pragma omp parallel for schedule(static) if (nr > 16)
  for (int64_t r = r0; r < r0 + nr; ++r) dequantize_rows_scalar(w, r, 1, out + (r - r0) * w.cols);
}

void quantized_matmul(const QuantizedWeight& w, const float* x, int64_t n, float* y) {
  if (n <= 4) {
#pragma omp parallel
    {
      std::vector<float> row(size_t(w.cols));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < w.rows; ++r) {
        dequantize_rows_scalar(w, r, 1, row.data());
        for (int64_t t = 0; t < n; ++t) y[t * w.rows + r] = dot_f32(row.data(), x + t * w.cols, size_t(w.cols));
      }
    }
    return;
  }
  const int64_t panel = std::max<int64_t>(64, std::min<int64_t>(w.rows, (int64_t(1) << 22) / w.cols));
  std::vector<float> buf(size_t(panel * w.cols));
  for (int64_t r0 = 0; r0 < w.rows; r0 += panel) {
    const int64_t pr = std::min(panel, w.rows - r0);
    dequantize_rows(w, r0, pr, buf.data());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(pr), int(w.cols), 1.0f, x, int(w.cols),
                buf.data(), int(w.cols), 0.0f, y + r0, int(w.rows));
  }
}

}  // namespace lowbit
