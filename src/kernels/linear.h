// A linear layer's weight as the model sees it: dense (f32/f16/bf16, possibly an owned buffer such as a
// fake-quantized copy) or packed quantized. y (n, rows) = x (n, cols) · Wᵀ either way.
#pragma once
#include <memory>
#include <vector>

#include "kernels/dense.h"
#include "kernels/quantized.h"

namespace lowbit {

struct Linear {
  DenseWeight dense;                             // used when quant is null
  std::shared_ptr<const QuantizedWeight> quant;  // packed weight, or null
  std::shared_ptr<const void> owner;             // keeps an owned dense buffer alive

  int64_t rows() const { return quant ? quant->rows : dense.rows; }
  int64_t cols() const { return quant ? quant->cols : dense.cols; }
};

inline void linear_forward(const Linear& w, const float* x, int64_t n, float* y) {
  if (w.quant)
    quantized_matmul(*w.quant, x, n, y);
  else
    dense_matmul(w.dense, x, n, y);
}

// A dense f32 Linear owning `values` (rows, cols).
Linear owned_f32_linear(std::vector<float> values, int64_t rows, int64_t cols);
// W (rows, cols) as f32, from either representation.
std::vector<float> linear_to_f32(const Linear& w);

}  // namespace lowbit
