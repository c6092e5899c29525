// The forward's elementwise nonlinearities. Softmax of one row in place, x[i] <- exp(x[i] - max) /
// Σ exp(x[j] - max): attention probabilities. SwiGLU's gate (Shazeer 2020), g[i] <- silu(g[i]) · u[i] with
// silu(x) = x / (1 + exp(-x)).
#pragma once
#include <cstddef>

namespace lowbit {

void softmax_inplace(float* x, size_t n);         // Highway SIMD (hn::Exp, a few ulp)
void softmax_inplace_scalar(float* x, size_t n);  // the plain twin (std::exp)

void silu_mul(float* g, const float* u, size_t n);         // Highway SIMD (hn::Exp, a few ulp)
void silu_mul_scalar(float* g, const float* u, size_t n);  // the plain twin (std::exp)

}  // namespace lowbit
