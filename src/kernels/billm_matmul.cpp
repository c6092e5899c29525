#include "kernels/billm_matmul.h"

#include "kernels/dense.h"

namespace lowbit {

void billm_matmul(const BillmWeight& w, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
  if (n <= 4) return billm_gemv(w, x, n, y);
  check_billm_weight(w, "billm_matmul");
  gemm_by_panels(w.rows, w.cols, x, n, y,
                 [&](int64_t r0, int64_t nr, float* out) { billm_dequantize_rows(w, r0, nr, out); });
}

void billm_matmul_scalar(const BillmWeight& w, const float* x, int64_t n, float* y) {
  check_billm_weight(w, "billm_matmul_scalar");
  const int64_t G = w.n_groups(), gs = w.group_size, cols = w.cols;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < w.rows; ++r) {
      const uint8_t* pa = w.signs + size_t(r) * w.row_bytes();
      const uint8_t* pb = w.plane2 + size_t(r) * w.row_bytes();
      const float* xt = x + t * cols;
      float acc = 0;
      for (int64_t g = 0; g < G; ++g) {
        float lv[8];
        billm_levels(w.params(r, g), lv);
        for (int64_t c = g * gs; c < (g + 1) * gs; ++c)
          acc += lv[int(plane_bit(pa, c)) + 2 * int(plane_bit(pb, c)) + 4 * int(plane_bit(w.salient, c))] *
                 xt[c];
      }
      y[t * w.rows + r] = acc;
    }
}

}  // namespace lowbit
