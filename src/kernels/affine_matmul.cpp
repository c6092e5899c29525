#include "kernels/affine_matmul.h"

#include <algorithm>
#include <vector>

#include "core/dtype.h"
#include "kernels/dense.h"

namespace lowbit {

void affine_matmul(const AffineWeight& w, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
  if (n <= 4) return affine_gemv(w, x, n, y);
  check_affine_weight(w, "affine_matmul");
  gemm_by_panels(w.rows, w.cols, x, n, y,
                 [&](int64_t r0, int64_t nr, float* out) { affine_dequantize_rows(w, r0, nr, out); });
}

}  // namespace lowbit
