#include "kernels/pbllm_matmul.h"

#include <vector>

#include "core/dtype.h"
#include "kernels/dense.h"

namespace lowbit {

void pbllm_matmul(const PbllmWeight& w, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
  if (n <= 4) return pbllm_gemv(w, x, n, y);
  check_pbllm_weight(w, "pbllm_matmul");
  gemm_by_panels(w.rows, w.cols, x, n, y,
                 [&](int64_t r0, int64_t nr, float* out) { pbllm_dequantize_rows(w, r0, nr, out); });
}

void pbllm_group_totals(const PbllmWeight& w, const float* x, int64_t n, float* totals) {
  const int64_t G = w.n_groups(), gs = w.group_size;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t g = 0; g < G; ++g) {
      float s = 0;
      for (int64_t c = g * gs; c < (g + 1) * gs; ++c) s += x[t * w.cols + c];
      totals[t * G + g] = s;
    }
}

void pbllm_matmul_scalar(const PbllmWeight& w, const float* x, int64_t n, float* y) {
  check_pbllm_weight(w, "pbllm_matmul_scalar");
  const int64_t G = w.n_groups(), gs = w.group_size, cols = w.cols;
  std::vector<float> tot(size_t(n * G));
  pbllm_group_totals(w, x, n, tot.data());
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < w.rows; ++r) {
      const uint8_t* sg = w.signs + size_t(r) * w.row_bytes();
      const float* xt = x + t * cols;
      float acc = 0;
      for (int64_t g = 0; g < G; ++g) {
        float s = 0;
        for (int64_t c = g * gs; c < (g + 1) * gs; ++c)
          if (plane_bit(sg, c)) s += xt[c];
        const float mu = f16_to_f32(w.binpar[2 * (r * G + g)]), a = f16_to_f32(w.binpar[2 * (r * G + g) + 1]);
        acc += 2 * a * s + (mu - a) * tot[size_t(t * G + g)];
      }
      const float S = w.rowpar[2 * r], Z = w.rowpar[2 * r + 1];
      int64_t k = w.row_start[r];
      for (int64_t g = 0; g < G; ++g) {
        const float cg = f16_to_f32(w.binpar[2 * (r * G + g)]) - f16_to_f32(w.binpar[2 * (r * G + g) + 1]);
        for (int64_t i = 0; i < w.counts[r * G + g]; ++i, ++k)
          acc += (S * (float(w.values[k]) - Z) - cg) * xt[g * gs + w.pos[k]];
      }
      y[t * w.rows + r] = acc;
    }
}

}  // namespace lowbit
