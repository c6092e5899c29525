#include "kernels/format_kernels.h"

#include "core/error.h"
#include "kernels/affine_matmul.h"

namespace lowbit {

namespace {

const FormatKernels kAffineCpu = {
    [](const PackedWeight& w, const float* x, int64_t n, float* y) { affine_matmul(as_affine(w), x, n, y); },
    [](const PackedWeight& w, const float* x, int64_t n, float* y) {
      affine_matmul_scalar(as_affine(w), x, n, y);
    },
    [](const PackedWeight& w, int64_t r0, int64_t nr, float* out) {
      affine_dequantize_rows(as_affine(w), r0, nr, out);
    }};

}  // namespace

const FormatKernels& format_kernels(const Format& f, Backend b) {
  // One line per (format, backend).
  if (b == Backend::Cpu && &f == &affine_format()) return kAffineCpu;
  fail("format '{}' has no kernels on this backend", f.name);
}

}  // namespace lowbit
