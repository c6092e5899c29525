#include "train/grad_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/logits.h"

namespace lowbit {

void rms_norm_backward(const float* x, const float* w, int64_t n, int d, double eps, const float* dy,
                       float* dx, bool accumulate, float* dw) {
#pragma omp parallel for schedule(static) if (n > 8)
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    const float* gr = dy + t * d;
    float* dr = dx + t * d;
    // r in double: the backward's own rounding should not add to the forward's.
    double ss = 0;
    for (int i = 0; i < d; ++i) ss += double(xr[i]) * xr[i];
    const double r = 1.0 / std::sqrt(ss / d + eps);
    double dot = 0;  // Σ g · x̂
    for (int i = 0; i < d; ++i) dot += double(gr[i]) * w[i] * xr[i] * r;
    const double mean = dot / d;
    for (int i = 0; i < d; ++i) {
      const float v = float(r * (double(gr[i]) * w[i] - xr[i] * r * mean));
      dr[i] = accumulate ? dr[i] + v : v;
    }
  }
  if (!dw) return;
  // Summed over rows in row order (deterministic), each row's r recomputed.
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    double ss = 0;
    for (int i = 0; i < d; ++i) ss += double(xr[i]) * xr[i];
    const double r = 1.0 / std::sqrt(ss / d + eps);
    for (int i = 0; i < d; ++i) dw[i] += float(double(dy[t * d + i]) * xr[i] * r);
  }
}

void silu_mul_backward(const float* g, const float* u, const float* dh, size_t n, float* dg, float* du) {
#pragma omp parallel for schedule(static) if (n > (size_t(1) << 15))
  for (size_t i = 0; i < n; ++i) {
    const float s = 1.0f / (1.0f + std::exp(-g[i]));
    const float silu = g[i] * s;
    du[i] = dh[i] * silu;
    dg[i] = dh[i] * u[i] * (s * (1.0f + g[i] * (1.0f - s)));
  }
}

namespace {

// logsumexp of a row, in double.
double log_sum_exp(const float* row, int64_t V) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < V; ++j) mx = row[j] > mx ? row[j] : mx;
  double s = 0;
  for (int64_t j = 0; j < V; ++j) s += std::exp(double(row[j]) - mx);
  return mx + std::log(s);
}

}  // namespace

double cross_entropy(const float* logits, const int32_t* labels, int64_t m, int64_t V) {
  double total = 0;
  for (int64_t i = 0; i < m; ++i)
    if (labels[i] != kIgnoreLabel) total += log_sum_exp(logits + i * V, V) - logits[i * V + labels[i]];
  return total;
}

double cross_entropy_backward(float* logits, const int32_t* labels, int64_t m, int64_t V, float scale) {
  std::vector<double> loss(size_t(m), 0.0);  // per row, summed in order below: deterministic for any threads
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    float* row = logits + i * V;
    if (labels[i] == kIgnoreLabel)
      std::fill(row, row + V, 0.0f);
    else
      loss[size_t(i)] = cross_entropy_grad_row(row, V, labels[i], scale);
  }
  double total = 0;
  for (double l : loss) total += l;
  return total;
}

void embedding_backward(const int32_t* tokens, int64_t n, int d, const float* dx, float* dE) {
  for (int64_t t = 0; t < n; ++t) {
    float* e = dE + int64_t(tokens[t]) * d;
    for (int i = 0; i < d; ++i) e[i] += dx[t * d + i];
  }
}

}  // namespace lowbit
