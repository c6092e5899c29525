// The scalar twins of kernels/logits_hwy.cpp.
#include "kernels/logits.h"

#include <algorithm>
#include <cmath>

namespace lowbit {

double log_softmax_at_scalar(const float* logits, int64_t V, int32_t target) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(logits[i]) - mx);
  return double(logits[target]) - mx - std::log(sum);
}

namespace {
double log_sum_exp(const float* x, int64_t V, float* mx_out) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, x[i]);
  double s = 0;
  for (int64_t i = 0; i < V; ++i) s += std::exp(double(x[i]) - mx);
  *mx_out = mx;
  return double(mx) + std::log(s);
}
int64_t argmax_row(const float* x, int64_t V) {
  int64_t b = 0;
  for (int64_t i = 1; i < V; ++i)
    if (x[i] > x[b]) b = i;
  return b;
}
}  // namespace

double cross_entropy_grad_row_scalar(float* row, int64_t V, int32_t target, float scale) {
  float mx;
  const double lse = log_sum_exp(row, V, &mx);
  const double loss = lse - double(row[target]);
  for (int64_t i = 0; i < V; ++i) row[i] = float(double(scale) * std::exp(double(row[i]) - lse));
  row[target] -= scale;
  return loss;
}

KlRow kl_divergence_row_scalar(const float* p, const float* q, int64_t V) {
  float mp, mq;
  const double lp = log_sum_exp(p, V, &mp), lq = log_sum_exp(q, V, &mq);
  double kl = 0;
  for (int64_t i = 0; i < V; ++i) {
    const double logp = double(p[i]) - lp, logq = double(q[i]) - lq;
    kl += std::exp(logp) * (logp - logq);
  }
  return {std::max(kl, 0.0), argmax_row(p, V), argmax_row(q, V)};  // rounding can leave -1e-17 for equal rows
}

}  // namespace lowbit
