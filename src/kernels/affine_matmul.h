// Kernels over AffineWeight (formats/affine.h): y (n, rows) = x (n, cols) · Ŵᵀ computed from the packed
// codes. Decode (small n) dequantizes on the fly inside the dot product; prefill dequantizes a panel of rows
// to f32 scratch and calls sgemm — the weights are never materialized as a whole FP copy.
#pragma once
#include <cstdint>

#include "formats/affine.h"

namespace lowbit {

// y (n, rows) = x (n, cols) · Ŵᵀ: the fused GEMV below for n <= 4, else panels of dequantized rows + sgemm.
// Multithreaded (OpenMP over rows); y must not alias x.
void affine_matmul(const AffineWeight& w, const float* x, int64_t n, float* y);
// Ŵ rows [r0, r0 + nr) into out (nr, cols). SIMD; bitwise equal to affine_dequantize_rows_scalar.
void affine_dequantize_rows(const AffineWeight& w, int64_t r0, int64_t nr, float* out);
// The decode path for 1 <= n <= 4 tokens: codes are unpacked in registers and never written out (2/3/4/8 bits
// without g_idx); act-order and 5..7-bit weights dequantize one row at a time into scratch instead.
void affine_gemv(const AffineWeight& w, const float* x, int64_t n, float* y);

// Its scalar twin is format_kernels.h's packed_matmul_scalar (the format's reference dequantizer).

}  // namespace lowbit
