#include "kernels/dualbin_matmul.h"

#include "core/dtype.h"
#include "kernels/dense.h"

namespace lowbit {

void dualbin_matmul(const DualBinWeight& w, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
  if (n <= 4) return dualbin_gemv(w, x, n, y);
  check_dualbin_weight(w, "dualbin_matmul");
  gemm_by_panels(w.rows, w.cols, x, n, y,
                 [&](int64_t r0, int64_t nr, float* out) { dualbin_dequantize_rows(w, r0, nr, out); });
}

void dualbin_matmul_scalar(const DualBinWeight& w, const float* x, int64_t n, float* y) {
  check_dualbin_weight(w, "dualbin_matmul_scalar");
  const int64_t G = w.n_groups(), gs = w.group_size, cols = w.cols;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < w.rows; ++r) {
      const uint8_t* p1 = w.plane1 + size_t(r) * w.row_bytes();
      const uint8_t* p2 = w.plane2 + size_t(r) * w.row_bytes();
      const float* xt = x + t * cols;
      float acc = 0;
      for (int64_t g = 0; g < G; ++g) {
        float s1 = 0, s2 = 0;
        for (int64_t c = g * gs; c < (g + 1) * gs; ++c) {
          if (plane_bit(p1, c)) s1 += xt[c];
          if (plane_bit(p2, c)) s2 += xt[c];
        }
        const float a1 = f16_to_f32(w.scales[2 * (r * G + g)]),
                    a2 = f16_to_f32(w.scales[2 * (r * G + g) + 1]);
        acc += a1 * s1 + a2 * s2;
      }
      y[t * w.rows + r] = acc;
    }
}

}  // namespace lowbit
