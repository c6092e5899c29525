#include "kernels/ops.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/blas.h"
#include "core/error.h"
#include "core/parallel.h"
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

namespace {

// Why lowbit splits GEMMs itself. OpenBLAS's threaded GEMM makes its threads wait for each other's packed
// panels by spinning in sched_yield, so when another process takes a core from one of them the other burns
// its time slices waiting (issue 30: -t 2 ran at a third of -t 1's speed beside one busy process). Instead,
// whole tiles of C are handed out from a shared counter (OpenMP's dynamic schedule) and each runs as a
// single-threaded sgemm: a thread that falls behind holds one tile, not everyone.
//
// Results stay those of the single OpenBLAS call: a C element is computed by exactly one call whose shape
// depends on (m, n, k) only, with the same micro-kernel and K blocking. Two OpenBLAS details make that true
// only under conditions, checked here and by a bitwise test of tiled against whole calls:
// - OpenBLAS routes small products to unblocked kernels that sum K in another order: its "small matrix"
//   kernels (AVX-512: at most 100³ multiply-adds, any layout), kept out by tiles of at least kMinTileWork,
//   and its "direct" sgemm (row-major A·B with alpha 1 and beta 0, up to 28·512·512, single-threaded calls
//   only), kept out by passing each tile in the column-major form cblas itself turns a row-major call into
//   (Cᵀ = op(B)ᵀ·op(A)ᵀ), which skips that check;
// - only k that is a multiple of 64 is tiled: when the last stretch of K lies between GEMM_Q and 2·GEMM_Q,
//   OpenBLAS's threaded driver halves it as (r + 1) / 2 and its single-threaded one rounds r / 2 up to the
//   micro-kernel's unroll, so for other k (513, 2049: measured) the two drivers add different partial sums.
constexpr int64_t kMinTileWork = int64_t(1) << 21;
constexpr int64_t kTiledKMultiple = 64;  // see the second point above
constexpr int64_t kTileAlign = 64;       // tile sides are multiples of every micro-kernel's unroll

// Tiles of C: mb × nb, the last row/column of tiles taking the remainder (so no tile is smaller than
// mb × nb).
struct Tiling {
  int64_t mb, nb, tm, tn;
  int64_t count() const { return tm * tn; }
};

int64_t align_down(int64_t x) {
  return x / kTileAlign * kTileAlign;
}

// About four tiles per thread, for balance when a thread is slowed, each of at least kMinTileWork; the longer
// side is split first (square-ish tiles pack the least). One tile when only one thread runs.
Tiling tiling(int64_t m, int64_t n, int64_t k) {
  const int threads = omp_in_parallel() ? 1 : num_threads();
  int64_t tm = 1, tn = 1;
  while (threads > 1 && k % kTiledKMultiple == 0 && tm * tn < 4 * threads) {
    const int64_t mb = align_down(m / (tm * 2)), nb = align_down(n / (tn * 2));  // after one more split
    const int64_t cur_mb = tm > 1 ? align_down(m / tm) : m, cur_nb = tn > 1 ? align_down(n / tn) : n;
    const bool m_ok = mb > 0 && mb * cur_nb * k >= kMinTileWork;
    const bool n_ok = nb > 0 && nb * cur_mb * k >= kMinTileWork;
    if (m_ok && (!n_ok || mb >= nb))
      tm *= 2;
    else if (n_ok)
      tn *= 2;
    else
      break;
  }
  const int64_t mb = tm > 1 ? align_down(m / tm) : m, nb = tn > 1 ? align_down(n / tn) : n;
  return {mb, nb, m / mb, n / nb};
}

// tile(i) for the n tiles, each a single-threaded OpenBLAS call (inside an active parallel region OpenBLAS
// runs on its calling thread). When the Team is one thread (the CPU is contended) there is no active region,
// so OpenBLAS is told one thread for the while, and solo() does the whole product in one single-threaded
// call, which sums every element as the tiles do and packs the operands once instead of once per tile.
// Called outside parallel regions only (tiling() gives one tile inside them), so nothing can turn the CPU
// contended between the check and parallel_for's own Team.
template <typename F, typename S>
void run_tiles(int64_t n, F&& tile, S&& solo) {
  if (Team().size() == 1) {
    BlasOneThread one;
    solo();
    return;
  }
  parallel_for(n, tile);
}

// cblas_sgemm, row-major, over the tiles of C (see above). A is (m, k) or (k, m) when trans_a; B is (k, n) or
// (n, k) when trans_b.
void sgemm_tiled(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const auto ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
  const Tiling t = tiling(m, n, k);
  if (t.count() == 1) {
    cblas_sgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), alpha, A, int(lda), B, int(ldb), beta, C,
                int(ldc));
    return;
  }
  run_tiles(
      t.count(),
      [&](int64_t i) {
        const int64_t bi = i / t.tn, bj = i % t.tn, i0 = bi * t.mb, j0 = bj * t.nb;
        const int64_t mi = bi + 1 == t.tm ? m - i0 : t.mb, nj = bj + 1 == t.tn ? n - j0 : t.nb;
        const float* a = trans_a ? A + i0 : A + i0 * lda;
        const float* b = trans_b ? B + j0 * ldb : B + j0;
        cblas_sgemm(CblasColMajor, tb, ta, int(nj), int(mi), int(k), alpha, b, int(ldb), a, int(lda), beta,
                    C + i0 * ldc + j0, int(ldc));
      },
      [&] {
        cblas_sgemm(CblasColMajor, tb, ta, int(n), int(m), int(k), alpha, B, int(ldb), A, int(lda), beta, C,
                    int(ldc));
      });
}

}  // namespace

void gemm(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_tiled(false, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
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

void gemm_f64(bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* A, int64_t lda,
              const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha,
              A, int(lda), B, int(ldb), beta, C, int(ldc));
}

void syrk_upper_f64(int64_t n, int64_t k, double alpha, const double* A, int64_t lda, double beta, double* C,
                    int64_t ldc) {
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, int(n), int(k), alpha, A, int(lda), beta, C, int(ldc));
}

void gemm_at(int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B,
             int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_tiled(true, false, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
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

// Tiled as sgemm_tiled is, for the same reason: p column blocks of nb (the last takes the remainder); tile
// (i, j), i ≤ j, of the upper triangle is ssyrk on the diagonal and Aᵢᵀ·Aⱼ by sgemm above it. Bitwise equal
// to one ssyrk call (tested): the diagonal blocks start at multiples of 64, so OpenBLAS's own diagonal
// sub-blocks fall where they fall in the whole call.
void syrk_upper(int64_t n, int64_t k, float alpha, const float* A, int64_t lda, float beta, float* C,
                int64_t ldc) {
  const int threads = omp_in_parallel() ? 1 : num_threads();
  int64_t p = 1;
  while (threads > 1 && k % kTiledKMultiple == 0 && (p + 1) * (p + 2) / 2 <= 4 * threads) {
    const int64_t nb = align_down(n / (p + 1));
    if (nb == 0 || nb * nb * k < kMinTileWork) break;
    ++p;
  }
  if (p == 1) {
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, int(n), int(k), alpha, A, int(lda), beta, C, int(ldc));
    return;
  }
  const int64_t nb = align_down(n / p);
  std::vector<std::pair<int64_t, int64_t>> tiles;  // (i, j) block indices, i ≤ j
  for (int64_t i = 0; i < p; ++i)
    for (int64_t j = i; j < p; ++j) tiles.emplace_back(i, j);
  auto tile = [&](int64_t t) {
    const auto [bi, bj] = tiles[size_t(t)];
    const int64_t i0 = bi * nb, j0 = bj * nb;
    const int64_t ni = bi + 1 == p ? n - i0 : nb, nj = bj + 1 == p ? n - j0 : nb;
    if (bi == bj)
      cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, int(ni), int(k), alpha, A + i0, int(lda), beta,
                  C + i0 * ldc + i0, int(ldc));
    else
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(ni), int(nj), int(k), alpha, A + i0, int(lda),
                  A + j0, int(lda), beta, C + i0 * ldc + j0, int(ldc));
  };
  run_tiles(int64_t(tiles.size()), tile, [&] {
    for (size_t t = 0; t < tiles.size(); ++t) tile(int64_t(t));
  });
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
  parallel_rows(
      n,
      [&](int64_t t) {
        const float* xr = x + t * d;
        float* yr = y + t * d;
        float ss = 0;
        for (int i = 0; i < d; ++i) ss += xr[i] * xr[i];
        const float inv = 1.0f / std::sqrt(ss / float(d) + float(eps));
        for (int i = 0; i < d; ++i) yr[i] = w[i] * (xr[i] * inv);
      },
      n > 8);
}

void rope(float* x, int64_t n, int n_heads, int hd, const float* inv_freq, bool interleaved, int p0,
          const int* pos_of) {
  const int half = hd / 2;
  parallel_rows(
      n,
      [&](int64_t t) {
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
      },
      n > 8);
}

}  // namespace lowbit::ops
