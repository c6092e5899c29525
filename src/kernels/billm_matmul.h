// Kernels over BillmWeight (formats/billm.h): y (n, rows) = x (n, cols) · Ŵᵀ with
//   Ŵ[r][c] = L_{r,g}[A + 2·B + 4·S_c]     (g = c / group_size; billm_levels)
//   L[0..4) = μ1 ∓ α1, μ2 ∓ α2;   L[4..8) = (μs ∓ αs1) ∓ αs2   (non-salient / salient columns)
// Unlike PB-LLM's sign plane (two values per group, so a masked sum per group), a weight here is a 2-bit code
// into a per-(row, block) table of 4 levels, 8 with the salient class, and the levels are not an affine
// function of the bits (two independent (μ, α) pairs, a residual pair), so masked sums would need one per
// level; decode instead builds the weights' values in registers: per (row, block) the 8 levels once
// (scalar, billm_levels), then per vector of columns the lanes' values picked from the broadcast levels by
// the bits (three mask selects, four more where the block's salient columns are), and one FMA per token.
// The weights are never expanded to memory; the lane values are bitwise the reference dequantizer's, only
// the summation order differs. Prefill dequantizes panels of rows to f32 and calls sgemm, as the other
// formats do.
#pragma once
#include <cstdint>

#include "formats/billm.h"

namespace lowbit {

// y (n, rows) = x (n, cols) · Ŵᵀ: billm_gemv for n <= 4, else panels of dequantized rows + sgemm.
// Multithreaded over rows; y must not alias x.
void billm_matmul(const BillmWeight& w, const float* x, int64_t n, float* y);
// Ŵ rows [r0, r0 + nr) into out (nr, cols). SIMD; bitwise equal to billm_dequantize_rows_scalar.
void billm_dequantize_rows(const BillmWeight& w, int64_t r0, int64_t nr, float* out);
// The decode path for 1 <= n <= 4 tokens: x (n, cols), y (n, rows); the selects above, lane-wise FMA chains
// reduced once per row.
void billm_gemv(const BillmWeight& w, const float* x, int64_t n, float* y);

// The scalar twin, for any n: x (n, cols), y (n, rows); per (token, row) Σ over the columns in order of
// Ŵ[r][c]·x[c], with Ŵ from billm_levels.
void billm_matmul_scalar(const BillmWeight& w, const float* x, int64_t n, float* y);

}  // namespace lowbit
