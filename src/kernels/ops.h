// The one door to the compute backends. model/, quant/ and eval/ call these (and the kernels headers they
// include), never BLAS, Highway or, later, CUDA directly: a grep for cblas_ outside kernels/ and core/blas
// finds nothing, and the layering test checks it. Every op has a scalar twin the tests compare it with; the
// ones that are plain scalar loops already (rms_norm, rope) are their own twins until a SIMD version lands.
//
// Shapes are row-major, as everywhere in lowbit.
#pragma once
#include <cstdint>

#include "kernels/dense.h"
#include "kernels/linear.h"
#include "kernels/softmax.h"

namespace lowbit::ops {

// y (n, rows) = T(x) (n, cols) · Wᵀ for any Linear: dense (dense.h's kernels) or packed (its format's
// kernels), after its input transform when it has one, plus its low-rank delta when it has one. y must not
// alias x.
void linear(const Linear& w, const float* x, int64_t n, float* y);

// C (m, n) = alpha · A (m, k) · B + beta · C, with B (k, n) (trans_b false) or B (n, k) used as Bᵀ
// (trans_b true); lda/ldb/ldc are row strides. OpenBLAS sgemm.
void gemm(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm_scalar(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// C (m, n) = alpha · Aᵀ · B + beta · C with A (k, m) and B (k, n): weight gradients, dW = dYᵀ X summed over
// the k tokens. OpenBLAS sgemm.
void gemm_at(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B,
             int64_t ldb, float beta, float* C, int64_t ldc);
void gemm_at_scalar(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B,
                    int64_t ldb, float beta, float* C, int64_t ldc);

// The backward of ops::linear with respect to its input: dx (n, cols) = dy (n, rows) · Ŵ (+ dx when
// accumulate), for a frozen dense or packed weight (row panels of Ŵ dequantized through the format's kernels,
// so a 4-bit base never exists whole in f32). A linear with an input transform has no backward here (its
// transform's Jacobian is not known): a clear error.
void linear_backward(const Linear& w, const float* dy, int64_t n, float* dx, bool accumulate);
// Its scalar twin: Ŵ from the format's reference dequantizer, sums in double.
void linear_backward_scalar(const Linear& w, const float* dy, int64_t n, float* dx, bool accumulate);

// The upper triangle of C (n, n) = alpha · Aᵀ A + beta · C with A (k, n): the Hessian xᵀx accumulation.
// OpenBLAS ssyrk; the strictly lower part of C is not touched.
void syrk_upper(int64_t n, int64_t k, float alpha, const float* A, int64_t lda, float beta, float* C,
                int64_t ldc);
void syrk_upper_scalar(int64_t n, int64_t k, float alpha, const float* A, int64_t lda, float beta, float* C,
                       int64_t ldc);

// Double-precision twins for QuIP's float64 arithmetic, plain cblas_dgemm / cblas_dsyrk calls (row-major).
void gemm_f64(bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* A, int64_t lda,
              const double* B, int64_t ldb, double beta, double* C, int64_t ldc);
void syrk_upper_f64(int64_t n, int64_t k, double alpha, const double* A, int64_t lda, double beta, double* C,
                    int64_t ldc);

// y (n, d) = x / sqrt(mean(x²) + eps) · w per row, in float as HF's LlamaRMSNorm computes it in float32.
void rms_norm(const float* x, const float* w, int64_t n, int d, double eps, float* y);

// RoPE in place on x (n, n_heads · hd): token t at position pos[t] (or p0 + t when pos is null) rotates each
// head's pairs by pos · inv_freq[i]: (x[i], x[i + hd/2]) (HF's rotate_half) or (x[2i], x[2i+1])
// (interleaved: Meta's original layout, llama2.c, GGUF).
void rope(float* x, int64_t n, int n_heads, int hd, const float* inv_freq, bool interleaved, int p0,
          const int* pos = nullptr);

}  // namespace lowbit::ops
