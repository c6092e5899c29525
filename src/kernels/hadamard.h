// Hadamard transforms of many rows (formats/hadamard.h has the definition and the f32 reference): the
// incoherence rotation of QuIP#/QuaRot applied to weight rows or activations, x_r ← H_n·x_r per row.
#pragma once
#include <cstdint>

namespace lowbit {

// x (count, n), each row in place ← H_n·row, or H_nᵀ·row when transpose. SIMD (Highway, the best target),
// bitwise equal to hadamard_rows_scalar: the same additions in the same order, the scale applied by the
// same single multiply (see hadamard_hwy.cpp). Rows are shared across threads when count·n is large; each
// row's arithmetic is one thread's, so results do not depend on the thread count. Errors when n has no
// 2^k·{1, 12, 20, 28} form or count < 0.
void hadamard_rows(float* x, int64_t count, int64_t n, bool transpose);

// The scalar twin: hadamard_ref on each row.
void hadamard_rows_scalar(float* x, int64_t count, int64_t n, bool transpose);

}  // namespace lowbit
