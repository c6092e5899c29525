// Kernels over Nf4Weight (formats/nf4.h): y (n, rows) = x (n, cols) · Ŵᵀ from the packed codes. Decode (n <=
// 4) reads the packed bytes directly: per block of 64 weights, the 16 possible dequantized values
// NF4[k]·A_b (+ τ_b) are one small table, and each code is a table lookup inside the dot product. Prefill
// dequantizes panels of rows to f32 and calls sgemm, as the affine kernels do.
#pragma once
#include <cstdint>

#include "formats/nf4.h"

namespace lowbit {

// y (n, rows) = x (n, cols) · Ŵᵀ: nf4_gemv for n <= 4, else panels of dequantized rows + sgemm.
// Multithreaded; y must not alias x.
void nf4_matmul(const Nf4Weight& w, const float* x, int64_t n, float* y);
// Ŵ rows [r0, r0 + nr) into out (nr, cols). SIMD; bitwise equal to nf4_dequantize_rows_scalar.
void nf4_dequantize_rows(const Nf4Weight& w, int64_t r0, int64_t nr, float* out);
// The decode path for 1 <= n <= 4 tokens: codes are decoded in registers and never written out.
void nf4_gemv(const Nf4Weight& w, const float* x, int64_t n, float* y);

// Its scalar twin is format_kernels.h's packed_matmul_scalar (the format's reference dequantizer).

}  // namespace lowbit
