#include "kernels/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/sys.h"
#include "kernels/format_kernels.h"

namespace lowbit::ops {

void linear(const Linear& w, const float* x, int64_t n, float* y) {
  const float* x0 = x;
  UninitVector<float> tx;
  if (w.input) {
    tx.resize(size_t(n * w.cols()));  // written whole by the transform
    w.input->apply(x, n, w.cols(), tx.data());
    x = tx.data();
  }
  if (w.packed)
    format_kernels(w.packed->format()).matmul(*w.packed, x, n, y);
  else
    dense_matmul(w.dense, x, n, y);
  if (const LowRank* d = w.delta.get()) {
    const int64_t rows = w.rows(), cols = w.cols();
    std::vector<float> h(size_t(n * d->r));  // (n, r)
    gemm(true, n, d->r, cols, 1.0f, x0, cols, d->A.data(), cols, 0.0f, h.data(), d->r);
    gemm(true, n, rows, d->r, d->scale, h.data(), d->r, d->B.data(), d->r, 1.0f, y, rows);
  }
}

void gemm(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha,
              A, int(lda), B, int(ldb), beta, C, int(ldc));
}

void gemm_scalar(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += double(A[i * lda + p]) * (trans_b ? B[j * ldb + p] : B[p * ldb + j]);
      float& c = C[i * ldc + j];
      c = float(alpha * s + (beta == 0 ? 0.0 : double(beta) * c));  // beta 0 ignores C (it may be garbage)
    }
}

void gemm_at(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B,
             int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(m), int(n), int(k), alpha, A, int(lda), B,
              int(ldb), beta, C, int(ldc));
}

void gemm_at_scalar(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B,
                    int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += double(A[p * lda + i]) * B[p * ldb + j];
      float& c = C[i * ldc + j];
      c = float(alpha * s + (beta == 0 ? 0.0 : double(beta) * c));
    }
}

namespace {

void check_backward(const Linear& w) {
  if (w.input) fail("linear_backward: a linear with an input transform has no backward pass");
  if (w.delta) fail("linear_backward: a linear with an attached low-rank delta has no backward pass here");
}

// Rows [r0, r0 + nr) of Ŵ as f32 into out (nr, cols), through the SIMD kernels.
void weight_rows(const Linear& w, int64_t r0, int64_t nr, float* out) {
  if (w.packed) {
    format_kernels(w.packed->format()).dequantize_rows(*w.packed, r0, nr, out);
    return;
  }
  const size_t es = dtype_size(w.dense.dtype);
  widen_to_f32(w.dense.dtype, static_cast<const uint8_t*>(w.dense.data) + size_t(r0 * w.cols()) * es, out,
               size_t(nr * w.cols()));
}

}  // namespace

void linear_backward(const Linear& w, const float* dy, int64_t n, float* dx, bool accumulate) {
  check_backward(w);
  const int64_t rows = w.rows(), cols = w.cols();
  if (!w.packed && w.dense.dtype == DType::F32) {  // dx (n, cols) = dy (n, rows) · W (rows, cols)
    gemm(false, n, cols, rows, 1.0f, dy, rows, static_cast<const float*>(w.dense.data), cols,
         accumulate ? 1.0f : 0.0f, dx, cols);
    return;
  }
  // Panels of at most ~4M weights (16 MiB of f32), as gemm_by_panels does for the forward.
  const int64_t panel = std::max<int64_t>(64, std::min<int64_t>(rows, (int64_t(1) << 22) / cols));
  UninitVector<float> buf(size_t(std::min(panel, rows) * cols));  // written whole by weight_rows
  for (int64_t r0 = 0; r0 < rows; r0 += panel) {
    const int64_t pr = std::min(panel, rows - r0);
    weight_rows(w, r0, pr, buf.data());
    // dx (n, cols) += dy[:, r0:r0+pr] (n, pr) · panel (pr, cols)
    gemm(false, n, cols, pr, 1.0f, dy + r0, rows, buf.data(), cols, r0 == 0 && !accumulate ? 0.0f : 1.0f, dx,
         cols);
  }
}

void linear_backward_scalar(const Linear& w, const float* dy, int64_t n, float* dx, bool accumulate) {
  check_backward(w);
  const int64_t rows = w.rows(), cols = w.cols();
  std::vector<float> W(size_t(rows * cols));
  if (w.packed)
    w.packed->format().dequantize_ref(*w.packed, 0, rows, W.data());
  else
    to_f32(w.dense.dtype, w.dense.data, W.data(), W.size());
  gemm_scalar(false, n, cols, rows, 1.0f, dy, rows, W.data(), cols, accumulate ? 1.0f : 0.0f, dx, cols);
}

void syrk_upper(int64_t n, int64_t k, float alpha, const float* A, int64_t lda, float beta, float* C,
                int64_t ldc) {
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, int(n), int(k), alpha, A, int(lda), beta, C, int(ldc));
}

void syrk_upper_scalar(int64_t n, int64_t k, float alpha, const float* A, int64_t lda, float beta, float* C,
                       int64_t ldc) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += double(A[p * lda + i]) * A[p * lda + j];
      float& c = C[i * ldc + j];
      c = float(alpha * s + (beta == 0 ? 0.0 : double(beta) * c));
    }
}

void rms_norm(const float* x, const float* w, int64_t n, int d, double eps, float* y) {
#pragma omp parallel for schedule(static) if (n > 8)
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    float* yr = y + t * d;
    float ss = 0;
    for (int i = 0; i < d; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / float(d) + float(eps));
    for (int i = 0; i < d; ++i) yr[i] = w[i] * (xr[i] * inv);
  }
}

void rope(float* x, int64_t n, int n_heads, int hd, const float* inv_freq, bool interleaved, int p0,
          const int* pos_of) {
  const int half = hd / 2;
#pragma omp parallel for schedule(static) if (n > 8)
  for (int64_t t = 0; t < n; ++t) {
    const float pos = float(pos_of ? pos_of[t] : p0 + int(t));
    for (int i = 0; i < half; ++i) {
      const float ang = inv_freq[i] * pos;  // float32 product, as torch's freqs
      const float c = std::cos(ang), s = std::sin(ang);
      for (int h = 0; h < n_heads; ++h) {
        float* v = x + t * int64_t(n_heads) * hd + int64_t(h) * hd;
        const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x1 * c + x0 * s;
      }
    }
  }
}

}  // namespace lowbit::ops
