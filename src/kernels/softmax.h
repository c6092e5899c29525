// In-place softmax of one row, x[i] <- exp(x[i] - max) / Σ exp(x[j] - max): attention probabilities.
#pragma once
#include <cstddef>

namespace lowbit {

void softmax_inplace(float* x, size_t n);         // Highway SIMD (hn::Exp, a few ulp)
void softmax_inplace_scalar(float* x, size_t n);  // the plain twin (std::exp)

}  // namespace lowbit
