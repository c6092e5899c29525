// Kernels over QuantizedWeight (formats/quantized.h): y (n, rows) = x (n, cols) · Ŵᵀ computed from the packed
// codes. Decode (small n) dequantizes on the fly inside the dot product; prefill dequantizes a panel of rows to
// f32 scratch and calls sgemm — the weights are never materialized as a whole FP copy.
#pragma once
#include <cstdint>

#include "formats/quantized.h"

namespace lowbit {

void quantized_matmul(const QuantizedWeight& w, const float* x, int64_t n, float* y);
// Ŵ rows [r0, r0 + nr) into out (nr, cols).
void dequantize_rows(const QuantizedWeight& w, int64_t r0, int64_t nr, float* out);

// Scalar twins (test oracles).
void dequantize_rows_scalar(const QuantizedWeight& w, int64_t r0, int64_t nr, float* out);
void quantized_matmul_scalar(const QuantizedWeight& w, const float* x, int64_t n, float* y);

}  // namespace lowbit
