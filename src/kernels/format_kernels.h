// The compute kernels of each packed format (formats/format.h), per backend: the kernels layer's half of the
// format table, as ggml keeps its CPU type traits apart from the type traits. A format's kernels are one
// entry in format_kernels.cpp; a backend (CUDA, later) is one more table.
#pragma once
#include <cstdint>

#include "formats/format.h"

namespace lowbit {

enum class Backend { Cpu };

struct FormatKernels {
  // y (n, rows) = x (n, cols) · Ŵᵀ on the best SIMD target of this CPU; multithreaded; y must not alias x.
  void (*matmul)(const PackedWeight& w, const float* x, int64_t n, float* y) = nullptr;
  // Its scalar twin (the test oracle).
  void (*matmul_scalar)(const PackedWeight& w, const float* x, int64_t n, float* y) = nullptr;
  // Ŵ rows [r0, r0 + nr) into out (nr, cols), SIMD; bitwise equal to the format's dequantize_ref.
  void (*dequantize_rows)(const PackedWeight& w, int64_t r0, int64_t nr, float* out) = nullptr;
};

// The scalar twin of every format's matmul (the test oracle): each row of Ŵ from the format's reference
// dequantizer, then plain f32 dot products in column order.
void packed_matmul_scalar(const PackedWeight& w, const float* x, int64_t n, float* y);

// The kernels of format f on backend b; throws a one-line error when b has none for f.
const FormatKernels& format_kernels(const Format& f, Backend b = Backend::Cpu);

}  // namespace lowbit
