#include "train/attention.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/ops.h"

namespace lowbit {

std::vector<int64_t> attention_prob_offsets(std::span<const int> starts, const AttnShape& a) {
  std::vector<int64_t> off{0};
  for (size_t s = 0; s + 1 < starts.size(); ++s) {
    const int64_t T = starts[s + 1] - starts[s];
    if (T < 0) fail("attention: segment {} has negative length", s);
    off.push_back(off.back() + int64_t(a.n_head) * T * T);
  }
  return off;
}

void attention_forward(const float* q, const float* k, const float* v, std::span<const int> starts,
                       const AttnShape& a, float* out, float* probs) {
  const int H = a.n_head, hd = a.head_dim, group = a.n_head / a.n_kv_head;
  const int64_t qs = int64_t(H) * hd, kvs = int64_t(a.n_kv_head) * hd;
  const float scale = 1.0f / std::sqrt(float(hd));  // as the inference forward computes it
  const std::vector<int64_t> off = attention_prob_offsets(starts, a);
  for (size_t s = 0; s + 1 < starts.size(); ++s) {
    const int64_t b = starts[s], T = starts[s + 1] - b;
    if (T == 0) continue;
    for (int h = 0; h < H; ++h) {
      const int g = h / group;
      float* P = probs + off[s] + int64_t(h) * T * T;  // (T, T)
      // S (T, T) = scale · Q_h (T, hd) · K_gᵀ
      ops::gemm(true, T, T, hd, scale, q + b * qs + h * hd, qs, k + b * kvs + g * hd, kvs, 0.0f, P, T);
#pragma omp parallel for schedule(static) if (T > 64)
      for (int64_t i = 0; i < T; ++i) {
        softmax_inplace(P + i * T, size_t(i + 1));
        std::fill(P + i * T + i + 1, P + (i + 1) * T, 0.0f);
      }
      // O_h (T, hd) = P · V_g
      ops::gemm(false, T, hd, T, 1.0f, P, T, v + b * kvs + g * hd, kvs, 0.0f, out + b * qs + h * hd, qs);
    }
  }
}

void attention_backward(const float* q, const float* k, const float* v, const float* probs,
                        std::span<const int> starts, const AttnShape& a, const float* dout, float* dq,
                        float* dk, float* dv) {
  const int H = a.n_head, hd = a.head_dim, group = a.n_head / a.n_kv_head;
  const int64_t qs = int64_t(H) * hd, kvs = int64_t(a.n_kv_head) * hd;
  const float scale = 1.0f / std::sqrt(float(hd));
  const std::vector<int64_t> off = attention_prob_offsets(starts, a);
  int64_t widest = 0;
  for (size_t s = 0; s + 1 < starts.size(); ++s)
    widest = std::max<int64_t>(widest, starts[s + 1] - starts[s]);
  std::vector<float> dS(size_t(widest * widest));  // (T, T): dP, then dS in place
  for (size_t s = 0; s + 1 < starts.size(); ++s) {
    const int64_t b = starts[s], T = starts[s + 1] - b;
    if (T == 0) continue;
    for (int h = 0; h < H; ++h) {
      const int g = h / group;
      const float* P = probs + off[s] + int64_t(h) * T * T;
      const float* dO = dout + b * qs + h * hd;  // (T, hd), row stride qs
      const float* Qh = q + b * qs + h * hd;
      const float* Kg = k + b * kvs + g * hd;
      const bool first = h % group == 0;  // the group's first head writes dk, dv; the others add
      // dV_g (T, hd) (+)= Pᵀ · dO
      ops::gemm_at(T, hd, T, 1.0f, P, T, dO, qs, first ? 0.0f : 1.0f, dv + b * kvs + g * hd, kvs);
      // dP (T, T) = dO · V_gᵀ
      ops::gemm(true, T, T, hd, 1.0f, dO, qs, v + b * kvs + g * hd, kvs, 0.0f, dS.data(), T);
#pragma omp parallel for schedule(static) if (T > 64)
      for (int64_t i = 0; i < T; ++i) {
        const float* p = P + i * T;
        float* d = dS.data() + i * T;
        double dot = 0;
        for (int64_t j = 0; j <= i; ++j) dot += double(d[j]) * p[j];
        for (int64_t j = 0; j <= i; ++j) d[j] = p[j] * (d[j] - float(dot));
        std::fill(d + i + 1, d + T, 0.0f);
      }
      // dQ_h (T, hd) = scale · dS · K_g ; dK_g (T, hd) (+)= scale · dSᵀ · Q_h
      ops::gemm(false, T, hd, T, scale, dS.data(), T, Kg, kvs, 0.0f, dq + b * qs + h * hd, qs);
      ops::gemm_at(T, hd, T, scale, dS.data(), T, Qh, qs, first ? 0.0f : 1.0f, dk + b * kvs + g * hd, kvs);
    }
  }
}

}  // namespace lowbit
