// Kernels over DualBinWeight (formats/dualbin.h): y (n, rows) = x (n, cols) · Ŵᵀ from the two bit planes.
// Decode (n <= 4) never expands the weights: per group, the two "masked sums" Σ_{b1=1} x and Σ_{b2=1} x are
// additions selected by the plane bits, then y += α1·s1 + α2·s2 (DB-LLM §3.2: the planes need no
// multiplications, only the two scales per group do). Prefill dequantizes panels of rows to f32 and calls
// sgemm, as the affine and NF4 kernels do.
#pragma once
#include <cstdint>

#include "formats/dualbin.h"

namespace lowbit {

// y (n, rows) = x (n, cols) · Ŵᵀ: dualbin_gemv for n <= 4, else panels of dequantized rows + sgemm.
// Multithreaded (OpenMP over rows); y must not alias x.
void dualbin_matmul(const DualBinWeight& w, const float* x, int64_t n, float* y);
// Ŵ rows [r0, r0 + nr) into out (nr, cols). SIMD; bitwise equal to dualbin_dequantize_rows_scalar.
void dualbin_dequantize_rows(const DualBinWeight& w, int64_t r0, int64_t nr, float* out);
// The decode path for 1 <= n <= 4 tokens: bit-masked sums of x per group, two multiplies per group.
void dualbin_gemv(const DualBinWeight& w, const float* x, int64_t n, float* y);

// The scalar twin of the GEMV's algorithm, for any n: per (token, row, group), s1 = Σ_{b1=1} x and
// s2 = Σ_{b2=1} x in column order, then y += α1·s1 + α2·s2. (format_kernels.h's packed_matmul_scalar, the
// dot product with the reference dequantizer's rows, is the other oracle.)
void dualbin_matmul_scalar(const DualBinWeight& w, const float* x, int64_t n, float* y);

}  // namespace lowbit
