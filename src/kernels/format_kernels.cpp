#include "kernels/format_kernels.h"

#include <vector>

#include "core/error.h"
#include "kernels/affine_matmul.h"
#include "kernels/billm_matmul.h"
#include "kernels/dualbin_matmul.h"
#include "kernels/nf4_matmul.h"
#include "kernels/pbllm_matmul.h"
#include "kernels/quip_matmul.h"
#include "kernels/slim_matmul.h"

namespace lowbit {

namespace {

const FormatKernels kAffineCpu = {
    [](const PackedWeight& w, const float* x, int64_t n, float* y) { affine_matmul(as_affine(w), x, n, y); },
    packed_matmul_scalar,
    [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      affine_dequantize_rows(as_affine(w), r0, nr, out);
    }};

const FormatKernels kNf4Cpu = {
    [](const PackedWeight& w, const float* x, int64_t n, float* y) { nf4_matmul(as_nf4(w), x, n, y); },
    packed_matmul_scalar,
    [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      nf4_dequantize_rows(as_nf4(w), r0, nr, out);
    }};

// Its scalar twin is the GEMV's own algorithm (masked sums per group), not the generic dot product.
const FormatKernels kDualBinCpu = {[](const PackedWeight& w, const float* x, int64_t n, float* y) {
                                     dualbin_matmul(as_dualbin(w), x, n, y);
                                   },
                                   [](const PackedWeight& w, const float* x, int64_t n, float* y) {
                                     dualbin_matmul_scalar(as_dualbin(w), x, n, y);
                                   },
                                   [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
                                     dualbin_dequantize_rows(as_dualbin(w), r0, nr, out);
                                   }};

// Its scalar twin works in the rotated space as the SIMD path does (the format's dequantize_ref builds the
// dense rows, O(rows·cols) each: too slow per row).
const FormatKernels kQuipCpu = {
    [](const PackedWeight& w, const float* x, int64_t n, float* y) { quip_matmul(as_quip(w), x, n, y); },
    [](const PackedWeight& w, const float* x, int64_t n, float* y) {
      quip_matmul_scalar(as_quip(w), x, n, y);
    },
    [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      quip_dequantize_rows(as_quip(w), r0, nr, out);
    }};

// Its scalar twin is the GEMV's own decomposition (group masked sums + salient corrections).
const FormatKernels kPbllmCpu = {
    [](const PackedWeight& w, const float* x, int64_t n, float* y) { pbllm_matmul(as_pbllm(w), x, n, y); },
    [](const PackedWeight& w, const float* x, int64_t n, float* y) {
      pbllm_matmul_scalar(as_pbllm(w), x, n, y);
    },
    [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      pbllm_dequantize_rows(as_pbllm(w), r0, nr, out);
    }};

// Its scalar twin is the same dot product over the levels (billm_levels), without building whole rows.
const FormatKernels kBillmCpu = {
    [](const PackedWeight& w, const float* x, int64_t n, float* y) { billm_matmul(as_billm(w), x, n, y); },
    [](const PackedWeight& w, const float* x, int64_t n, float* y) {
      billm_matmul_scalar(as_billm(w), x, n, y);
    },
    [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      billm_dequantize_rows(as_billm(w), r0, nr, out);
    }};

// Its scalar twin is the GEMV's own decomposition (per group: scale·(Σ code·x − zero·Σx), or
// mean·Σx + α·(2·Σ_{code=1} x − Σx) in a 1-bit group), in column order.
const FormatKernels kSlimCpu = {
    [](const PackedWeight& w, const float* x, int64_t n, float* y) { slim_matmul(as_slim(w), x, n, y); },
    [](const PackedWeight& w, const float* x, int64_t n, float* y) {
      slim_matmul_scalar(as_slim(w), x, n, y);
    },
    [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      slim_dequantize_rows(as_slim(w), r0, nr, out);
    }};

}  // namespace

void packed_matmul_scalar(const PackedWeight& w, const float* x, int64_t n, float* y) {
  std::vector<float> row(size_t(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    w.format().dequantize_ref(w, r, 1, row.data());
    for (int64_t t = 0; t < n; ++t) {
      float s = 0;
      for (int64_t c = 0; c < w.cols; ++c) s += row[size_t(c)] * x[t * w.cols + c];
      y[t * w.rows + r] = s;
    }
  }
}

const FormatKernels& format_kernels(const Format& f, Backend b) {
  // One line per (format, backend).
  if (b == Backend::Cpu && &f == &affine_format()) return kAffineCpu;
  if (b == Backend::Cpu && &f == &nf4_format()) return kNf4Cpu;
  if (b == Backend::Cpu && &f == &dualbin_format()) return kDualBinCpu;
  if (b == Backend::Cpu && &f == &quip_format()) return kQuipCpu;
  if (b == Backend::Cpu && &f == &pbllm_format()) return kPbllmCpu;
  if (b == Backend::Cpu && &f == &billm_format()) return kBillmCpu;
  if (b == Backend::Cpu && &f == &slim_format()) return kSlimCpu;
  fail("format '{}' has no kernels on this backend", f.name);
}

}  // namespace lowbit
