// Reductions over one row of n_vocab logits, the per-token cost of evaluation outside the model:
// log_softmax_at (task scoring, perplexity) and kl_divergence_row (KLD against a base model). SIMD (Highway,
// kernels/logits_hwy.cpp) with scalar twins (kernels/logits.cpp), the test oracles.
#pragma once
#include <cstdint>

namespace lowbit {

// log softmax(row)[target], and whether target is the row's first argmax (torch.argmax's tie rule).
double log_softmax_at(const float* row, int n_vocab, int32_t target, bool* is_argmax);
// Scalar twin: max, then Σ exp in double.
double log_softmax_at_scalar(const float* logits, int64_t V, int32_t target);

// Cross-entropy of one row of logits against target, and its gradient in place: returns
// logsumexp(row) − row[target] and overwrites row with scale · (softmax(row) − onehot(target)). SIMD: the
// max and Σ exp as log_softmax_at (f32 exp lanes, sums in double), the probabilities as f32 lanes of
// exp(x − max) · (scale / Σ); a few ulp from the scalar twin, which does everything in double.
double cross_entropy_grad_row(float* row, int64_t V, int32_t target, float scale);
double cross_entropy_grad_row_scalar(float* row, int64_t V, int32_t target, float scale);

// KL(P ‖ Q) for one row of logits each, and each row's argmax (the first maximum, as torch.argmax).
struct KlRow {
  double kl = 0;
  int64_t argmax_p = 0, argmax_q = 0;
};
// SIMD: one fused pass in double lanes, Σ e^a·(a − b) / Σ e^a − log Σ e^a + log Σ e^b with a, b the
// max-shifted rows. Equal to the scalar twin up to summation order and Exp's last bits.
KlRow kl_divergence_row(const float* p_logits, const float* q_logits, int64_t V);
// Scalar twin (test oracle): the textbook form, log-sum-exp of each row, then Σ p_v (log p_v − log q_v).
KlRow kl_divergence_row_scalar(const float* p_logits, const float* q_logits, int64_t V);

}  // namespace lowbit
