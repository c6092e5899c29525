// Dense (unquantized) linear-layer kernels over f32/f16/bf16 weights, computed in fp32.
//
// y (n, rows) = x (n, cols) · Wᵀ with W (rows, cols) row-major — PyTorch's nn.Linear layout (out, in).
// Small n (decode) runs a SIMD GEMV straight over the stored weights (memory-bound: bytes read once).
// Large n (prefill) widens panels of W to f32 and calls OpenBLAS sgemm (compute-bound).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include "core/dtype.h"

namespace lowbit {

struct DenseWeight {
  DType dtype = DType::F32;
  const void* data = nullptr;  // (rows, cols)
  int64_t rows = 0, cols = 0;
};

// y (n, rows) = x (n, cols) · Wᵀ. Multithreaded; y must not alias x.
void dense_matmul(const DenseWeight& w, const float* x, int64_t n, float* y);

// The prefill path shared by every weight format: y (n, rows) = x (n, cols) · Wᵀ where fill(r0, nr, out)
// writes rows [r0, r0 + nr) of W as f32 into out (nr, cols). Panels of at most ~4M weights (16 MiB of f32)
// keep the scratch small for 100k-row heads; each panel goes to OpenBLAS sgemm.
void gemm_by_panels(int64_t rows, int64_t cols, const float* x, int64_t n, float* y,
                    const std::function<void(int64_t r0, int64_t nr, float* out)>& fill);

// SIMD kernels (Highway, runtime dispatch to the best target of this CPU).
float dot_f32(const float* a, const float* b, size_t n);
float dot_row(DType t, const void* row, const float* x, size_t n);  // Σ row[i]·x[i], row in f32/f16/bf16
void widen_to_f32(DType t, const void* src, float* dst, size_t n);  // f16/bf16/f32 -> f32

// Plain scalar twins: the oracles the SIMD kernels are tested against.
float dot_row_scalar(DType t, const void* row, const float* x, size_t n);
void dense_matmul_scalar(const DenseWeight& w, const float* x, int64_t n, float* y);

// Name of the SIMD target chosen at run time (e.g. "AVX3", "AVX2"), for benchmark output.
const char* simd_target_name();

}  // namespace lowbit
