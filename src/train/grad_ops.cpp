#include "train/grad_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/logits.h"
#include "kernels/softmax.h"

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

namespace {

// One row of dad_loss_backward. p (V) is scratch. The softmaxes' sums are not returned, but the largest
// probability is exp(0)/Σ, so lse = max − log(p_max) needs no second pass of exps.
struct DadRow {
  double loss, ce, kl, w;
};
DadRow dad_row(float* zs, const float* zt, int64_t V, double gamma, float scale, float* p, float* zs_copy,
               void (*softmax)(float*, size_t)) {
  const auto lse_of = [&](const float* z, const float* prob) {
    int64_t k = 0;
    for (int64_t j = 1; j < V; ++j) k = z[j] > z[k] ? j : k;
    return double(z[k]) - std::log(double(prob[k]));
  };
  // Teacher: p_T, H_T, and Σ p_T·zs for the cross-entropy.
  std::copy_n(zt, V, p);
  softmax(p, size_t(V));
  const double lse_t = lse_of(zt, p);
  double pz_t = 0, pt_zs = 0;
  for (int64_t j = 0; j < V; ++j) {
    pz_t += double(p[j]) * zt[j];
    pt_zs += double(p[j]) * zs[j];
  }
  const double h_t = lse_t - pz_t;
  // Student: p_S in place of zs once Σ p_S·zs is taken.
  std::copy_n(zs, V, zs_copy);
  softmax(zs, size_t(V));
  const double lse_s = lse_of(zs_copy, zs);
  double ps_zs = 0;
  for (int64_t j = 0; j < V; ++j) ps_zs += double(zs[j]) * zs_copy[j];
  const double h_s = lse_s - ps_zs;
  const double ce = lse_s - pt_zs;
  // Entropies are ≥ 0 up to rounding; clamp so that a one-hot row does not give (−ε)^γ.
  const double w = gamma == 0 ? 1.0 : std::pow(std::max(h_t, 0.0) * std::max(h_s, 0.0), gamma);
  const float g = float(w * scale);
  for (int64_t j = 0; j < V; ++j) zs[j] = g * (zs[j] - p[j]);
  return {w * ce, ce, ce - h_t, w};
}

DadSums dad_rows(float* zs, const float* zt, int64_t m, int64_t V, double gamma, float scale, float* weights,
                 void (*softmax)(float*, size_t)) {
  std::vector<DadRow> rows(static_cast<size_t>(m));
#pragma omp parallel
  {
    std::vector<float> p(static_cast<size_t>(V)), copy(static_cast<size_t>(V));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < m; ++i)
      rows[size_t(i)] = dad_row(zs + i * V, zt + i * V, V, gamma, scale, p.data(), copy.data(), softmax);
  }
  DadSums s;  // summed in row order: deterministic for any thread count
  for (int64_t i = 0; i < m; ++i) {
    s.loss += rows[size_t(i)].loss;
    s.ce += rows[size_t(i)].ce;
    s.kl += rows[size_t(i)].kl;
    s.weight += rows[size_t(i)].w;
    if (weights) weights[i] = float(rows[size_t(i)].w);
  }
  return s;
}

}  // namespace

DadSums dad_loss_backward(float* zs, const float* zt, int64_t m, int64_t V, double gamma, float scale,
                          float* weights) {
  return dad_rows(zs, zt, m, V, gamma, scale, weights, softmax_inplace);
}

DadSums dad_loss_backward_scalar(float* zs, const float* zt, int64_t m, int64_t V, double gamma, float scale,
                                 float* weights) {
  return dad_rows(zs, zt, m, V, gamma, scale, weights, softmax_inplace_scalar);
}

void embedding_backward(const int32_t* tokens, int64_t n, int d, const float* dx, float* dE) {
  for (int64_t t = 0; t < n; ++t) {
    float* e = dE + int64_t(tokens[t]) * d;
    for (int i = 0; i < d; ++i) e[i] += dx[t * d + i];
  }
}

}  // namespace lowbit
