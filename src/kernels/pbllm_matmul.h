// Kernels over PbllmWeight (formats/pbllm.h): y (n, rows) = x (n, cols) · Ŵᵀ. With c_g = μ_g − α_g, every
// binarized weight is c_g + 2α_g·b (b its sign bit), so a row's dot product is
//   Σ_g [ 2α_g · Σ_{c∈g, b=1} x_c  +  c_g · Σ_{c∈g} x_c ]  +  Σ_{salient k} (S·(q_k − Z) − c_{g(k)}) ·
//   x_{c_k}
// (the sign bit is 0 at salient positions, so the first sum skips them and the correction replaces their
// c_g·x term with the 8-bit value). Decode (n <= 4) evaluates exactly that: one masked sum per group over the
// sign plane (PB-LLM §3.2's XNOR-style binary product, here additions selected by bits), the group totals
// Σ_{c∈g} x shared by every row, and a sparse pass over the ~10% salient weights; the weights are never
// expanded. Prefill dequantizes panels of rows to f32 and calls sgemm, as the other formats do.
#pragma once
#include <cstdint>

#include "formats/pbllm.h"

namespace lowbit {

// y (n, rows) = x (n, cols) · Ŵᵀ: pbllm_gemv for n <= 4, else panels of dequantized rows + sgemm.
// Multithreaded over rows; y must not alias x.
void pbllm_matmul(const PbllmWeight& w, const float* x, int64_t n, float* y);
// Ŵ rows [r0, r0 + nr) into out (nr, cols). SIMD; bitwise equal to pbllm_dequantize_rows_scalar.
void pbllm_dequantize_rows(const PbllmWeight& w, int64_t r0, int64_t nr, float* out);
// The decode path for 1 <= n <= 4 tokens (the decomposition above).
void pbllm_gemv(const PbllmWeight& w, const float* x, int64_t n, float* y);

// The scalar twin of the GEMV's algorithm, for any n: per (token, row), the group sums in column order, then
// the salient corrections in storage order.
void pbllm_matmul_scalar(const PbllmWeight& w, const float* x, int64_t n, float* y);

// Σ_{c∈g} x_c of each token and group: totals (n, G). Shared by the GEMV and its twin.
void pbllm_group_totals(const PbllmWeight& w, const float* x, int64_t n, float* totals);

}  // namespace lowbit
