// A linear layer as the model sees it: {format, weights, optional input transform}. The weight is dense
// (f32/f16/bf16, possibly an owned buffer such as a fake-quantized copy) or packed in a format of the format
// table (formats/format.h); `input`, when set, transforms x before the product (kernels/input_transform.h).
// ops::linear computes y (n, rows) = T(x) (n, cols) · Wᵀ (+ the low-rank delta) for every combination.
#pragma once
#include <memory>
#include <vector>

#include "formats/format.h"
#include "kernels/dense.h"
#include "kernels/input_transform.h"

namespace lowbit {

// A low-rank update added to a linear's output: y += scale · (x Aᵀ) Bᵀ, with A (r, cols) and B (rows, r). A
// LoRA adapter applied unmerged (QLoRA evaluates a 4-bit base this way: the base stays packed).
struct LowRank {
  int64_t r = 0;
  float scale = 1;
  std::vector<float> A, B;
};

struct Linear {
  DenseWeight dense;                            // used when packed is null
  std::shared_ptr<const PackedWeight> packed;   // a packed format, or null
  std::shared_ptr<const InputTransform> input;  // applied to the input first, or null
  std::shared_ptr<const LowRank> delta;         // added to the output (on the untransformed input), or null
  std::shared_ptr<const void> owner;            // keeps an owned dense buffer alive

  int64_t rows() const { return packed ? packed->rows : dense.rows; }
  int64_t cols() const { return packed ? packed->cols : dense.cols; }
  // The packed weight as a format's struct (null when dense or another format).
  template <class T>
  const T* packed_as() const {
    return lowbit::packed_as<T>(packed.get());
  }
};

// A Linear of a packed weight.
Linear packed_linear(std::shared_ptr<const PackedWeight> w);
// A dense f32 Linear owning `values` (rows, cols).
Linear owned_f32_linear(std::vector<float> values, int64_t rows, int64_t cols);
// W (rows, cols) as f32, from either representation (the input transform is not part of W).
std::vector<float> linear_to_f32(const Linear& w);

}  // namespace lowbit
