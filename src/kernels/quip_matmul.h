// The product of a QuIP weight (formats/quip.h) with activations, never materialising the dense weight:
//   y_t = Uᵀ·(Ŵ′·(V·(x_t ⊘ d)))
// with the rotations applied in structured form (kernels/rotation.h) and Ŵ′·v done by the affine kernels on
// the same code bytes: Ŵ′ = S·(A − ½·1), A = q − (maxq − 1)/2 (the `centred` view), S = 2s/maxq, so
// Ŵ′·v = S·(A·v − ½·Σv).
#pragma once
#include <cstdint>

#include "formats/quip.h"

namespace lowbit {

// y (n, rows) = x (n, cols) · Ŵᵀ. y must not alias x.
void quip_matmul(const QuipWeight& w, const float* x, int64_t n, float* y);
// Its scalar twin: the same three steps from the definitions (rotate_ref, Ŵ′ = s·(2q − maxq)/maxq row by row,
// plain dot products).
void quip_matmul_scalar(const QuipWeight& w, const float* x, int64_t n, float* y);
// Rows [r0, r0 + nr) of Ŵ = Uᵀ·Ŵ′·V·diag(1/d) into out (nr, cols), through the kernels: the rows of Uᵀ from
// unit vectors, one sgemm with Ŵ′, then V row by row. O(nr·rows·cols) (for reports and linear_to_f32).
void quip_dequantize_rows(const QuipWeight& w, int64_t r0, int64_t nr, float* out);

}  // namespace lowbit
