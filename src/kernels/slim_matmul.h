// Kernels over SlimWeight (formats/slim.h): y (n, rows) = x (n, cols) · Ŵᵀ computed from the packed codes,
// each column group at its own bit width. The decode GEMV never expands a row: per (row, group g) it uses
//   bits[g] >= 2:  Σ_{c∈g} Ŵ_c·x_c = S·(Σ_c q_c·x_c − Z·X_g)
//   bits[g] == 1:  Σ_{c∈g} Ŵ_c·x_c = μ·X_g + α·(2·Σ_{q_c=1} x_c − X_g)
// with X_g = Σ_{c∈g} x_c computed once per (token, group) and shared by every row; the inner sums unpack the
// group's codes at its width (planar SIMD decoders for 2/3/4/8 bits, the natural-order decoder for 5..7,
// bit-plane masked sums for 1; kernels/packed_codes-inl.h, kernels/bitplane-inl.h). Prefill dequantizes
// panels of rows to f32 and calls sgemm, as the other formats do.
#pragma once
#include <cstdint>

#include "formats/slim.h"

namespace lowbit {

// y (n, rows) = x (n, cols) · Ŵᵀ: slim_gemv for n <= 4, else panels of dequantized rows + sgemm.
// Multithreaded over rows; y must not alias x.
void slim_matmul(const SlimWeight& w, const float* x, int64_t n, float* y);
// Ŵ rows [r0, r0 + nr) into out (nr, cols). SIMD; bitwise equal to slim_dequantize_rows_scalar.
void slim_dequantize_rows(const SlimWeight& w, int64_t r0, int64_t nr, float* out);
// The decode path for 1 <= n <= 4 tokens: x (n, cols), y (n, rows). The decomposition above, summed in a
// different order from the scalar twin's: X_g in double, rounded once; within a group the products q·x (or
// the selected x of a 1-bit group) go to several lane-wise FMA chains, in a permuted column order for the
// planar widths (the last group_size mod block codes of a group, if any, in a scalar chain); the groups,
// visited sorted by bit width rather than in column order, have their vector sums scaled (by S, or 2α in a
// 1-bit group) into one lane-wise total per (row, token), reduced once per row, while their scalar terms
// (−S·Z·X_g; μ·X_g − α·X_g) are added group by group to a scalar sum.
void slim_gemv(const SlimWeight& w, const float* x, int64_t n, float* y);

// The scalar twin, for any n: per token X_g = Σ_{c∈g} x_c in f32 in column order; per (token, row) for each
// group in order Σ q_c·x_c in f32 in column order (in a 1-bit group the sum of the x_c with q_c = 1), then
// the group's term as above, added to the row's sum.
void slim_matmul_scalar(const SlimWeight& w, const float* x, int64_t n, float* y);

}  // namespace lowbit
