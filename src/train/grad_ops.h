// Backward passes of the forward's elementwise and normalisation ops (model/llama.cpp, kernels/ops.h), each
// the exact derivative of the float forward it pairs with. The matrix products of the backward go through
// ops::gemm / ops::gemm_at / ops::linear_backward; these are the pieces between them.
//
// Shapes: n = rows (tokens), d = row width, V = vocabulary.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

// Label of a position that contributes no loss (torch.nn.CrossEntropyLoss's default ignore_index).
inline constexpr int32_t kIgnoreLabel = -100;

// RMSNorm y = w · x · r with r = 1/sqrt(mean(x²) + eps), per row. With x̂ = x·r and g = dy·w:
// dx = r · (g − x̂ · mean(g · x̂)), dw = Σ_rows dy · x̂.
// dx (n, d) is written, or added to when accumulate; dw (d) is added to when non-null (a frozen norm passes
// null and its gradient is never formed).
void rms_norm_backward(const float* x, const float* w, int64_t n, int d, double eps, const float* dy,
                       float* dx, bool accumulate, float* dw = nullptr);

// SwiGLU h = silu(g) · u (Shazeer 2020), silu(g) = g·σ(g): dg = dh · u · σ(g)(1 + g(1 − σ(g))),
// du = dh · silu(g). g, u are the pre-activation inputs.
void silu_mul_backward(const float* g, const float* u, const float* dh, size_t n, float* dg, float* du);

// Cross-entropy of rows of logits (m, V) against labels (m; kIgnoreLabel skips a row): returns Σ over
// labelled rows of logsumexp(row) − row[label], in double. The _backward form also overwrites each row with
// scale · (softmax(row) − onehot(label)), its gradient (zero for ignored rows).
double cross_entropy(const float* logits, const int32_t* labels, int64_t m, int64_t V);
double cross_entropy_backward(float* logits, const int32_t* labels, int64_t m, int64_t V, float scale);

// Deviation-Aware Distillation (DB-LLM, Chen et al. 2024, §3.3): soft cross-entropy of the student's rows
// of logits zs (m, V) against the teacher's zt (m, V), each row weighted by the product of the two
// predictions' entropies, w = (H(p_T)·H(p_S))^γ, so that ambiguous predictions (high entropy on either side)
// count more than confident ones. Per row:
//   p = softmax(z),  H(p) = lse(z) − Σ p·z,  CE(p_T, p_S) = lse(zs) − Σ p_T·zs,  loss = w·CE(p_T, p_S)
// (CE differs from KL(p_T ‖ p_S) by H(p_T), which no student parameter moves). The weight is a constant of
// the backward (detached, as a focusing weight): the gradient is w·(p_S − p_T). γ = 0 is plain
// distillation. Returns Σ over rows of w·CE, and overwrites zs with scale · its gradient. weights, when
// non-null, receives each row's w.
struct DadSums {
  double loss = 0;    // Σ w·CE
  double ce = 0;      // Σ CE (unweighted, for monitoring)
  double kl = 0;      // Σ KL(p_T ‖ p_S) = Σ CE − H(p_T) (unweighted, for monitoring)
  double weight = 0;  // Σ w
};
DadSums dad_loss_backward(float* zs, const float* zt, int64_t m, int64_t V, double gamma, float scale,
                          float* weights = nullptr);
// Its scalar twin (the softmaxes by std::exp, everything else identical).
DadSums dad_loss_backward_scalar(float* zs, const float* zt, int64_t m, int64_t V, double gamma, float scale,
                                 float* weights = nullptr);

// Embedding lookup x[t] = E[tokens[t]]: dE[tokens[t]] += dx[t] (rows of a repeated token add up, in order).
void embedding_backward(const int32_t* tokens, int64_t n, int d, const float* dx, float* dE);

}  // namespace lowbit
