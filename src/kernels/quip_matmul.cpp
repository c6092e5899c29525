#include "kernels/quip_matmul.h"

#include <vector>

#include "core/sys.h"
#include "kernels/affine_matmul.h"
#include "kernels/ops.h"
#include "kernels/rotation.h"

namespace lowbit {

namespace {

// xr (n, cols) = V·(x_t ⊘ d) per token.
void rotate_input(const QuipWeight& w, const float* x, int64_t n, float* xr, bool scalar) {
  const int64_t cols = w.cols;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < cols; ++c) xr[t * cols + c] = x[t * cols + c] / w.d[c];
  if (scalar)
    rotate_rows_scalar(*w.V, xr, n, false);
  else
    rotate_rows(*w.V, xr, n, false);
}

}  // namespace

void quip_matmul(const QuipWeight& w, const float* x, int64_t n, float* y) {
  const int64_t rows = w.rows, cols = w.cols;
  UninitVector<float> xr(static_cast<size_t>(n * cols));  // (n, cols) written whole
  rotate_input(w, x, n, xr.data(), false);
  affine_matmul(w.centred, xr.data(), n, y);  // y (n, rows) = xr · Aᵀ
  const float S = 2.0f * w.scale / float(w.maxq());
  for (int64_t t = 0; t < n; ++t) {
    double sum = 0;  // Σ_c xr[t][c], in double: it is subtracted from sums of the same size
    for (int64_t c = 0; c < cols; ++c) sum += xr[size_t(t * cols + c)];
    const float half = float(0.5 * sum);
    for (int64_t r = 0; r < rows; ++r) y[t * rows + r] = S * (y[t * rows + r] - half);
  }
  rotate_rows(*w.U, y, n, true);
}

void quip_matmul_scalar(const QuipWeight& w, const float* x, int64_t n, float* y) {
  const int64_t rows = w.rows, cols = w.cols;
  std::vector<float> xr(static_cast<size_t>(n * cols)), row(static_cast<size_t>(cols));
  rotate_input(w, x, n, xr.data(), true);
  for (int64_t r = 0; r < rows; ++r) {
    quip_rotated_rows(w, r, 1, row.data());
    for (int64_t t = 0; t < n; ++t) {
      float s = 0;
      for (int64_t c = 0; c < cols; ++c) s += row[size_t(c)] * xr[size_t(t * cols + c)];
      y[t * rows + r] = s;
    }
  }
  rotate_rows_scalar(*w.U, y, n, true);
}

void quip_dequantize_rows(const QuipWeight& w, int64_t r0, int64_t nr, float* out) {
  const int64_t rows = w.rows, cols = w.cols;
  std::vector<float> e(static_cast<size_t>(nr * rows), 0.0f);  // (nr, rows): rows r0.. of Uᵀ = columns of U
  for (int64_t i = 0; i < nr; ++i) e[size_t(i * rows + r0 + i)] = 1;
  rotate_rows(*w.U, e.data(), nr, false);
  std::vector<float> wq(static_cast<size_t>(rows * cols));  // Ŵ′
  quip_rotated_rows(w, 0, rows, wq.data());
  ops::gemm(false, nr, cols, rows, 1.0f, e.data(), rows, wq.data(), cols, 0.0f, out, cols);
  rotate_rows(*w.V, out, nr, true);  // a row vector times V is Vᵀ applied to it
  for (int64_t i = 0; i < nr; ++i)
    for (int64_t c = 0; c < cols; ++c) out[i * cols + c] /= w.d[c];
}

}  // namespace lowbit
