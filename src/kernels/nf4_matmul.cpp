#include "kernels/nf4_matmul.h"

#include <vector>

#include "kernels/dense.h"

namespace lowbit {

void nf4_matmul(const Nf4Weight& w, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
  if (n <= 4) return nf4_gemv(w, x, n, y);
  check_nf4_weight(w, "nf4_matmul");
  gemm_by_panels(w.rows, w.cols, x, n, y,
                 [&](int64_t r0, int64_t nr, float* out) { nf4_dequantize_rows(w, r0, nr, out); });
}

}  // namespace lowbit
