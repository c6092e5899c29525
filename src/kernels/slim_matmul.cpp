#include "kernels/slim_matmul.h"

#include <vector>

#include "core/dtype.h"
#include "formats/affine.h"
#include "kernels/dense.h"

namespace lowbit {

void slim_matmul(const SlimWeight& w, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
  if (n <= 4) return slim_gemv(w, x, n, y);
  check_slim_weight(w, "slim_matmul");
  gemm_by_panels(w.rows, w.cols, x, n, y,
                 [&](int64_t r0, int64_t nr, float* out) { slim_dequantize_rows(w, r0, nr, out); });
}

void slim_matmul_scalar(const SlimWeight& w, const float* x, int64_t n, float* y) {
  check_slim_weight(w, "slim_matmul_scalar");
  const int64_t G = w.n_groups(), gs = w.group_size, cols = w.cols, G1 = w.n_one_bit;
  const size_t rb = w.row_bytes();
  std::vector<float> sx(static_cast<size_t>(G));
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * cols;
    for (int64_t g = 0; g < G; ++g) {
      float s = 0;
      for (int64_t c = g * gs; c < (g + 1) * gs; ++c) s += xt[c];
      sx[size_t(g)] = s;
    }
    for (int64_t r = 0; r < w.rows; ++r) {
      const uint8_t* row = w.codes + size_t(r) * rb;
      float acc = 0;
      for (int64_t g = 0; g < G; ++g) {
        const int b = w.bits[g];
        const uint8_t* gp = row + w.group_offset[g];
        const float* xg = xt + g * gs;
        const float X = sx[size_t(g)], s = f16_to_f32(w.scales[r * G + g]);
        float q_x = 0;  // Σ q·x; in a 1-bit group the sum of the selected x
        for (int64_t c = 0; c < gs; ++c) q_x += float(packed_code(gp, b, c)) * xg[c];
        if (b == 1) {
          const float m = f16_to_f32(w.means[r * G1 + w.one_index[g]]);
          acc += m * X + s * (2.0f * q_x - X);
        } else {
          acc += s * (q_x - float(w.zeros[r * G + g]) * X);
        }
      }
      y[t * w.rows + r] = acc;
    }
  }
}

}  // namespace lowbit
